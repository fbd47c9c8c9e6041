-- depends: 0010_refund_events
-- Disputes (chargebacks): what Stripe tells us of each (charge.dispute.*), who bears its cost, and the
-- ledger accounts and kinds its postings use.
--
-- When Stripe withdraws the disputed amount D and its dispute fee F (one balance transaction, type
-- adjustment, fee F), platform cash goes down by D + F. The provider bears it (dispute_liability
-- 'provider', the default) up to what the booking still owes them (unpaid: pending or available, not yet
-- sent), the amount first, then the fee; the platform bears the rest on platform_dispute_costs (an expense,
-- a debit balance). So cash = what providers are owed + commission − dispute costs, always. A won dispute
-- reinstates D (not the fee: Stripe keeps it whatever the outcome) to whoever bore it.

ALTER TABLE providers ADD COLUMN dispute_liability text NOT NULL DEFAULT 'provider'
  CHECK (dispute_liability IN ('provider', 'platform'));

CREATE TABLE disputes (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  stripe_dispute_id  text NOT NULL UNIQUE,
  booking_id         uuid NOT NULL REFERENCES bookings (id),
  payment_intent_id  text,
  charge_id          text NOT NULL,
  amount             bigint NOT NULL CHECK (amount > 0),
  currency           char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  -- Stripe's statuses; a status only moves forward (open → under review → closed), whatever the order of
  -- the events that report it.
  status             text NOT NULL CHECK (status IN ('warning_needs_response', 'warning_under_review',
                       'warning_closed', 'needs_response', 'under_review', 'won', 'lost', 'prevented')),
  reason             text NOT NULL,
  fee                bigint NOT NULL DEFAULT 0 CHECK (fee >= 0),  -- Stripe's dispute fee, once withdrawn
  provider_share     bigint NOT NULL DEFAULT 0 CHECK (provider_share >= 0),  -- what the provider bore of D + F
  liability          text CHECK (liability IN ('provider', 'platform')),  -- as it was at the withdrawal
  evidence_due_by    timestamptz,
  funds_withdrawn_at timestamptz,
  funds_reinstated_at timestamptz,
  closed_at          timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX disputes_booking_id_idx ON disputes (booking_id);
CREATE INDEX disputes_open_idx ON disputes (booking_id)
  WHERE status NOT IN ('won', 'lost', 'warning_closed', 'prevented');
CREATE TRIGGER disputes_touch_updated_at BEFORE UPDATE ON disputes FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER disputes_no_delete BEFORE DELETE ON disputes FOR EACH ROW EXECUTE FUNCTION refuse_delete();

-- Widened (the lists as of 0010_refund_events plus disputes'):
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_kind_check,
  ADD CONSTRAINT ledger_accounts_kind_check CHECK (kind IN (
    'platform_cash', 'platform_commission', 'provider_pending', 'provider_available', 'payouts_in_transit',
    'platform_dispute_costs'));

ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check,
  ADD CONSTRAINT ledger_transactions_kind_check CHECK (kind IN (
    'capture', 'deposit_capture', 'refund', 'refund_reversal', 'maturity', 'payout_initiated', 'payout_paid',
    'payout_returned', 'dispute_withdrawal', 'dispute_reinstatement'));

ALTER TABLE stripe_event_effects DROP CONSTRAINT stripe_event_effects_effect_check,
  ADD CONSTRAINT stripe_event_effects_effect_check CHECK (effect IN (
    'booking_paid', 'payment_failed', 'late_payment_refund', 'refund_recorded', 'refund_failed', 'no_change',
    'unknown_booking', 'amount_mismatch', 'ignored', 'deposit_authorized', 'deposit_claimed', 'deposit_released',
    'deposit_lapsed', 'deposit_failed', 'dispute_opened', 'dispute_updated', 'dispute_funds_withdrawn',
    'dispute_funds_reinstated', 'dispute_closed'));

ALTER TABLE reconciliations DROP CONSTRAINT reconciliations_kind_check,
  ADD CONSTRAINT reconciliations_kind_check CHECK (kind IN ('capture', 'refund', 'payout', 'dispute',
                                                            'dispute_reversal'));

-- The owner hears of a dispute when it opens and when it closes.
INSERT INTO notification_templates (event, audience, subject, text_body, html_body) VALUES
('dispute_opened', 'provider', 'Payment disputed: {{ booking.service_name }} on {{ booking.start_at }}',
 E'The customer''s bank disputed {{ event.amount_display }} paid for {{ booking.service_name }} ({{ booking.resource_name }}) on {{ booking.start_at }}. Reason given: {{ event.reason }}. The amount and the card network''s dispute fee are withdrawn while the dispute is open.\n\n{{ link }}\n',
 '<p>The customer''s bank disputed <b>{{ event.amount_display }}</b> paid for <b>{{ booking.service_name }}</b> ({{ booking.resource_name }}) on {{ booking.start_at }}. Reason given: {{ event.reason }}. The amount and the card network''s dispute fee are withdrawn while the dispute is open.</p><p><a href="{{ link }}">Open the booking</a></p>'),
('dispute_closed', 'provider', 'Dispute closed ({{ event.outcome }}): {{ booking.service_name }} on {{ booking.start_at }}',
 E'The dispute over {{ event.amount_display }} paid for {{ booking.service_name }} on {{ booking.start_at }} is closed: {{ event.outcome }}. A won dispute returns the amount (the dispute fee is not returned); a lost one keeps it withdrawn.\n\n{{ link }}\n',
 '<p>The dispute over <b>{{ event.amount_display }}</b> paid for <b>{{ booking.service_name }}</b> on {{ booking.start_at }} is closed: <b>{{ event.outcome }}</b>. A won dispute returns the amount (the dispute fee is not returned); a lost one keeps it withdrawn.</p><p><a href="{{ link }}">Open the booking</a></p>');
