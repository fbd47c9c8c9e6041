-- Stripe Connect: each provider's Express connected account, kept as Stripe last told us (account.updated),
-- and payout batches held while the account cannot be paid.
--
-- stripe_accounts holds one account per provider. ``stripe_updated_at`` is the Stripe time (the event's
-- ``created``, or the account's own when we created it) of the state the row holds: an event older than it
-- changes nothing, so events apply in any order and any number of times.

CREATE TABLE stripe_accounts (
  provider_id        uuid PRIMARY KEY REFERENCES providers (id),
  account_id         text NOT NULL UNIQUE CHECK (account_id ~ '^acct_[A-Za-z0-9]+$'),
  charges_enabled    boolean NOT NULL DEFAULT false,
  payouts_enabled    boolean NOT NULL DEFAULT false,
  details_submitted  boolean NOT NULL DEFAULT false,
  requirements       jsonb NOT NULL DEFAULT '{"currently_due": [], "past_due": [], "disabled_reason": null}'
                     CHECK (jsonb_typeof(requirements) = 'object'),
  stripe_updated_at  timestamptz NOT NULL,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER stripe_accounts_touch_updated_at BEFORE UPDATE ON stripe_accounts
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- A batch of a provider whose connected account has payouts disabled is recorded, with its reason and no
-- payouts: the money stays available and a later period pays it once the account is enabled.
ALTER TABLE payout_batches ADD COLUMN held_reason text CHECK (length(held_reason) <= 1000);

-- Widened with account.updated's effects (the list as of 0010_refund_events plus ours).
ALTER TABLE stripe_event_effects DROP CONSTRAINT stripe_event_effects_effect_check,
  ADD CONSTRAINT stripe_event_effects_effect_check CHECK (effect IN (
    'booking_paid', 'payment_failed', 'late_payment_refund', 'refund_recorded', 'refund_failed', 'no_change',
    'unknown_booking', 'amount_mismatch', 'ignored', 'deposit_authorized', 'deposit_claimed', 'deposit_released',
    'deposit_lapsed', 'deposit_failed', 'dispute_opened', 'dispute_updated', 'dispute_funds_withdrawn',
    'dispute_funds_reinstated', 'dispute_closed', 'stripe_account_updated', 'unknown_account'));

INSERT INTO notification_templates (event, audience, subject, text_body, html_body) VALUES
('payout_held', 'provider', 'Payout on hold: {{ event.amount_display }}',
 E'We could not pay you {{ event.amount_display }}: {{ event.reason }}. Finish your Stripe onboarding and we pay it with the next payout.\n\n{{ link }}\n',
 '<p>We could not pay you {{ event.amount_display }}: {{ event.reason }}. Finish your Stripe onboarding and we pay it with the next payout.</p><p><a href="{{ link }}">Your payouts</a></p>');

-- A provider's connected account as its owners see it (NULL: not onboarded through Connect).
CREATE FUNCTION provider_stripe_account(p_provider uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object('id', account_id, 'charges_enabled', charges_enabled,
                            'payouts_enabled', payouts_enabled, 'details_submitted', details_submitted,
                            'requirements', requirements, 'updated_at', stripe_updated_at)
  FROM stripe_accounts WHERE provider_id = p_provider
$$;
