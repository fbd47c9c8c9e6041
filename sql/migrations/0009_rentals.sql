-- depends: 0008_access
-- Rentals (seed 004): request-to-book with the owner's approval, check-in and check-out, security deposits
-- authorised before arrival and claimed or released after departure. One lifecycle, extended:
--
--   requested ──approve──▶ pending_payment ──paid──▶ paid ──(slot)──────────────────────────▶ completed
--       │ decline ▶ declined         │ expire/cancel        │ (stay) check-in ▶ checked_in ─▶ checked_out ─▶ completed
--       │ expire ▶ expired                                 └ cancel ▶ cancelled        (deposit settled)
--       └ withdraw ▶ cancelled

-- Per resource: instant booking or a request the owner answers; how long a request holds its time; the
-- deposit a stay asks for. Per provider: the cancellation policy of request-mode bookings (NULL: the same
-- as instant bookings').
ALTER TABLE resources
  ADD COLUMN booking_mode text NOT NULL DEFAULT 'instant' CHECK (booking_mode IN ('instant', 'request')),
  ADD COLUMN request_ttl_hours integer NOT NULL DEFAULT 24 CHECK (request_ttl_hours BETWEEN 1 AND 720),
  ADD COLUMN security_deposit bigint CHECK (security_deposit BETWEEN 1 AND 1000000000000),
  ADD CONSTRAINT resources_deposit_only_for_stays CHECK (kind = 'stay' OR security_deposit IS NULL);
ALTER TABLE providers
  ADD COLUMN request_cancellation_policy jsonb CHECK (jsonb_typeof(request_cancellation_policy) = 'array');

-- resource_details selected r.* when it was created: recreate it to show the new columns.
DROP VIEW resource_details;
CREATE VIEW resource_details AS
SELECT r.*,
       coalesce((SELECT array_agg(rs.service_id ORDER BY rs.created_at) FROM resource_services rs
                 WHERE rs.resource_id = r.id), '{}') AS service_ids,
       coalesce((SELECT jsonb_agg(jsonb_build_object('weekday', h.weekday, 'opens_at', h.opens_at,
                                                     'closes_at', h.closes_at) ORDER BY h.weekday, h.opens_at)
                 FROM resource_hours h WHERE h.resource_id = r.id), '[]') AS hours
FROM resources r;

-- The booking remembers how it was made. hold_expires_at is when an unanswered request or an unpaid hold
-- lapses (status requested or pending_payment).
ALTER TABLE bookings
  ADD COLUMN booking_mode text NOT NULL DEFAULT 'instant' CHECK (booking_mode IN ('instant', 'request')),
  DROP CONSTRAINT bookings_status_check,
  ADD CONSTRAINT bookings_status_check CHECK (status IN (
    'requested', 'pending_payment', 'paid', 'checked_in', 'checked_out', 'completed',
    'declined', 'expired', 'cancelled')),
  DROP CONSTRAINT bookings_check,
  ADD CONSTRAINT bookings_waiting_lapses CHECK (status NOT IN ('requested', 'pending_payment')
                                                OR hold_expires_at IS NOT NULL),
  -- a request holds its time like an unpaid hold: nobody else takes the dates while the owner decides
  DROP CONSTRAINT bookings_no_overlap,
  ADD CONSTRAINT bookings_no_overlap EXCLUDE USING gist (resource_id WITH =, period WITH &&)
    WHERE (status IN ('requested', 'pending_payment', 'paid', 'checked_in', 'checked_out', 'completed'));
DROP INDEX bookings_pending_hold_idx;
CREATE INDEX bookings_waiting_lapse_idx ON bookings (hold_expires_at) WHERE status IN ('requested', 'pending_payment');

CREATE OR REPLACE FUNCTION resource_busy(resource uuid, win tstzrange) RETURNS tstzmultirange
LANGUAGE sql STABLE AS $$
  SELECT coalesce((SELECT range_agg(b.period) FROM bookings b
                   WHERE b.resource_id = resource
                     AND b.status IN ('requested', 'pending_payment', 'paid', 'checked_in', 'checked_out', 'completed')
                     AND b.period && win), '{}'::tstzmultirange)
       + coalesce((SELECT range_agg(k.period) FROM resource_blocks k
                   WHERE k.resource_id = resource AND k.deleted_at IS NULL AND k.period && win),
                  '{}'::tstzmultirange)
$$;

-- The one transition table, now by kind: a slot is completed once paid; a stay is checked in, checked out,
-- and completed when its deposit is settled.
ALTER TABLE booking_transitions ADD COLUMN kinds text[] NOT NULL DEFAULT '{slot,stay}'
  CHECK (kinds <@ '{slot,stay}' AND cardinality(kinds) > 0);
UPDATE booking_transitions SET kinds = '{slot}' WHERE from_status = 'paid' AND to_status = 'completed';
INSERT INTO booking_transitions (from_status, to_status, kinds) VALUES
  ('requested', 'pending_payment', '{slot,stay}'),
  ('requested', 'declined', '{slot,stay}'),
  ('requested', 'expired', '{slot,stay}'),
  ('requested', 'cancelled', '{slot,stay}'),
  ('paid', 'checked_in', '{stay}'),
  ('checked_in', 'checked_out', '{stay}'),
  ('checked_out', 'completed', '{stay}');

-- Still one trigger: the move must be in the table for the booking's kind, a request is approved only before
-- it lapses (whoever locks the row first, the owner or the expiry sweep, decides), and nobody checks in
-- before the stay's first day (its period starts at the local midnight of the check-in date).
CREATE OR REPLACE FUNCTION bookings_check_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM booking_transitions
                 WHERE from_status = OLD.status AND to_status = NEW.status AND NEW.kind = ANY (kinds)) THEN
    RAISE EXCEPTION 'booking % (%) cannot go from % to %', OLD.id, OLD.kind, OLD.status, NEW.status
      USING ERRCODE = 'check_violation', CONSTRAINT = 'bookings_valid_transition';
  END IF;
  IF OLD.status = 'requested' AND NEW.status = 'pending_payment' AND OLD.hold_expires_at <= now() THEN
    RAISE EXCEPTION 'booking % was requested until %: too late to approve', OLD.id, OLD.hold_expires_at
      USING ERRCODE = 'check_violation', CONSTRAINT = 'bookings_request_lapsed';
  END IF;
  IF NEW.status = 'checked_in' AND now() < lower(NEW.period) THEN
    RAISE EXCEPTION 'booking % cannot check in before %', OLD.id, lower(NEW.period)
      USING ERRCODE = 'check_violation', CONSTRAINT = 'bookings_check_in_from_first_day';
  END IF;
  RETURN NEW;
END;
$$;

-- A stay's security deposit: a second PaymentIntent, capture_method=manual, authorised off-session with the
-- card that paid the booking shortly before arrival, then captured in part or in full (a claim) or
-- cancelled (a release) after departure. One row per booking that asked for one.
CREATE TABLE booking_deposits (
  booking_id         uuid PRIMARY KEY REFERENCES bookings (id),
  provider_id        uuid NOT NULL REFERENCES providers (id),
  amount             bigint NOT NULL CHECK (amount > 0),
  currency           char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  status             text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'authorized', 'claimed', 'released', 'failed')),
  stripe_customer_id text,                -- the Stripe Customer the booking's card was saved to
  payment_method_id  text,                -- the card that paid the booking (from its payment_intent.succeeded)
  authorize_job      uuid,                -- the deposit.authorize job, staged once
  payment_intent_id  text UNIQUE,         -- the authorisation's PaymentIntent
  authorized_at      timestamptz,
  claim_deadline     timestamptz,         -- set at check-out: claim before it, else released automatically
  settle_job         uuid,                -- the claim or release job that holds the deposit while it talks to Stripe
  settle_action      text CHECK (settle_action IN ('claim', 'release')),
  claim_amount       bigint CHECK (claim_amount > 0),  -- asked for by the claim in flight or done
  claim_reason       text CHECK (length(claim_reason) <= 500),
  claimed_amount     bigint CHECK (claimed_amount > 0),
  failure_code       text,
  failure_message    text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  CHECK (claimed_amount <= amount AND claim_amount <= amount),
  CHECK ((status = 'claimed') = (claimed_amount IS NOT NULL)),
  CHECK (status NOT IN ('authorized', 'claimed') OR payment_intent_id IS NOT NULL),
  CHECK ((settle_job IS NULL) = (settle_action IS NULL))
);
CREATE INDEX booking_deposits_provider_id_idx ON booking_deposits (provider_id);
CREATE INDEX booking_deposits_pending_idx ON booking_deposits (created_at) WHERE status = 'pending';
CREATE INDEX booking_deposits_claim_deadline_idx ON booking_deposits (claim_deadline) WHERE status = 'authorized';
CREATE TRIGGER booking_deposits_touch_updated_at BEFORE UPDATE ON booking_deposits
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- A deposit moves forward only: claimed and released are final, so a claim is captured (and paid out) once.
CREATE FUNCTION booking_deposits_check_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status <> OLD.status AND NOT (OLD.status, NEW.status) IN (
      ('pending', 'authorized'), ('pending', 'failed'), ('pending', 'released'),
      ('failed', 'authorized'), ('failed', 'released'),
      ('authorized', 'claimed'), ('authorized', 'released'), ('authorized', 'failed')) THEN
    RAISE EXCEPTION 'deposit of booking % cannot go from % to %', OLD.booking_id, OLD.status, NEW.status
      USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_deposits_valid_transition';
  END IF;
  IF OLD.status IN ('claimed', 'released') AND (NEW.claimed_amount IS DISTINCT FROM OLD.claimed_amount
                                               OR NEW.payment_intent_id IS DISTINCT FROM OLD.payment_intent_id) THEN
    RAISE EXCEPTION 'deposit of booking % is settled', OLD.booking_id
      USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_deposits_valid_transition';
  END IF;
  RETURN NEW;
END;
$$;
CREATE TRIGGER booking_deposits_check_transition BEFORE UPDATE ON booking_deposits
  FOR EACH ROW EXECUTE FUNCTION booking_deposits_check_transition();

-- A claimed deposit is money in like a capture: cash in, the provider's share payable, our commission.
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check,
  ADD CONSTRAINT ledger_transactions_kind_check CHECK (kind IN (
    'capture', 'deposit_capture', 'refund', 'maturity', 'payout_initiated', 'payout_paid', 'payout_returned'));

-- What a Stripe event did to a deposit.
ALTER TABLE stripe_event_effects DROP CONSTRAINT stripe_event_effects_effect_check,
  ADD CONSTRAINT stripe_event_effects_effect_check CHECK (effect IN (
    'booking_paid', 'payment_failed', 'late_payment_refund', 'refund_recorded', 'no_change', 'unknown_booking',
    'amount_mismatch', 'ignored', 'deposit_authorized', 'deposit_claimed', 'deposit_released', 'deposit_lapsed',
    'deposit_failed'));

-- What the new events tell people. Owners learn of a request (with links to answer it); customers of the
-- answer and of their deposit.
INSERT INTO notification_templates (event, audience, subject, text_body, html_body) VALUES
('booking_requested', 'provider', 'Booking request: {{ booking.service_name }} on {{ booking.start_at }}',
 E'{{ customer.name }} asks to book {{ booking.service_name }} ({{ booking.resource_name }}) from {{ booking.start_at }} to {{ booking.end_at }} ({{ booking.amount_display }}). The dates are held for you until {{ event.respond_by }}.\n\nApprove: {{ event.approve_link }}\nDecline: {{ event.decline_link }}\nThe request: {{ link }}\n',
 '<p>{{ customer.name }} asks to book <b>{{ booking.service_name }}</b> ({{ booking.resource_name }}) from {{ booking.start_at }} to {{ booking.end_at }} ({{ booking.amount_display }}). The dates are held for you until {{ event.respond_by }}.</p><p><a href="{{ event.approve_link }}">Approve</a> · <a href="{{ event.decline_link }}">Decline</a> · <a href="{{ link }}">The request</a></p>'),
('booking_requested', 'customer', 'Request sent to {{ provider.name }}',
 E'Hello {{ customer.name }},\n\nwe sent your request for {{ booking.service_name }} from {{ booking.start_at }} to {{ provider.name }}. You will hear from us when they answer; nothing is charged until then.\n\n{{ link }}\n',
 '<p>Hello {{ customer.name }},</p><p>we sent your request for <b>{{ booking.service_name }}</b> from {{ booking.start_at }} to {{ provider.name }}. You will hear from us when they answer; nothing is charged until then.</p><p><a href="{{ link }}">Your request</a></p>'),
('booking_pending_payment', 'customer', 'Approved: {{ booking.service_name }} with {{ provider.name }}',
 E'Hello {{ customer.name }},\n\n{{ provider.name }} approved your request for {{ booking.service_name }} from {{ booking.start_at }}.{% if event.reason %} They wrote: "{{ event.reason }}"{% endif %} Pay {{ booking.amount_display }} to confirm it.\n\n{{ link }}\n',
 '<p>Hello {{ customer.name }},</p><p>{{ provider.name }} approved your request for <b>{{ booking.service_name }}</b> from {{ booking.start_at }}.{% if event.reason %} They wrote: “{{ event.reason }}”{% endif %} Pay {{ booking.amount_display }} to confirm it.</p><p><a href="{{ link }}">Pay now</a></p>'),
('booking_declined', 'customer', 'Your request to {{ provider.name }} was declined',
 E'Hello {{ customer.name }},\n\n{{ provider.name }} declined your request for {{ booking.service_name }} from {{ booking.start_at }}.{% if event.reason %} Their reason: "{{ event.reason }}"{% endif %} Nothing was charged.\n\n{{ link }}\n',
 '<p>Hello {{ customer.name }},</p><p>{{ provider.name }} declined your request for <b>{{ booking.service_name }}</b> from {{ booking.start_at }}.{% if event.reason %} Their reason: “{{ event.reason }}”{% endif %} Nothing was charged.</p><p><a href="{{ link }}">Details</a></p>'),
('deposit_authorized', 'customer', 'Security deposit held for your stay at {{ booking.resource_name }}',
 E'Hello {{ customer.name }},\n\nwe placed a hold of {{ event.amount_display }} on your card as the security deposit for your stay from {{ booking.start_at }}. It is not charged unless the host claims damage after you leave.\n\n{{ link }}\n',
 '<p>Hello {{ customer.name }},</p><p>we placed a hold of {{ event.amount_display }} on your card as the security deposit for your stay from {{ booking.start_at }}. It is not charged unless the host claims damage after you leave.</p><p><a href="{{ link }}">Your booking</a></p>'),
('deposit_failed', 'customer', 'We could not hold the security deposit for your stay',
 E'Hello {{ customer.name }},\n\nwe could not place the security deposit of {{ event.amount_display }} on your card for your stay from {{ booking.start_at }}. The host may contact you about it.\n\n{{ link }}\n',
 '<p>Hello {{ customer.name }},</p><p>we could not place the security deposit of {{ event.amount_display }} on your card for your stay from {{ booking.start_at }}. The host may contact you about it.</p><p><a href="{{ link }}">Your booking</a></p>'),
('deposit_failed', 'provider', 'Security deposit not held: {{ booking.resource_name }} from {{ booking.start_at }}',
 E'We could not place the security deposit of {{ event.amount_display }} for {{ customer.name }}''s stay from {{ booking.start_at }} ({{ event.failure_code }}). Check-in is still possible: you decide.\n\n{{ link }}\n',
 '<p>We could not place the security deposit of {{ event.amount_display }} for {{ customer.name }}''s stay from {{ booking.start_at }} ({{ event.failure_code }}). Check-in is still possible: you decide.</p><p><a href="{{ link }}">Open the booking</a></p>'),
('deposit_claimed', 'customer', 'Part of your security deposit was claimed',
 E'Hello {{ customer.name }},\n\nthe host claimed {{ event.amount_display }} of your security deposit: {{ event.reason }}. The rest of the hold is released.\n\n{{ link }}\n',
 '<p>Hello {{ customer.name }},</p><p>the host claimed {{ event.amount_display }} of your security deposit: {{ event.reason }}. The rest of the hold is released.</p><p><a href="{{ link }}">Details</a></p>'),
('deposit_released', 'customer', 'Your security deposit is released',
 E'Hello {{ customer.name }},\n\nthe hold of {{ event.amount_display }} on your card for your stay at {{ booking.resource_name }} is released. Thank you for staying!\n\n{{ link }}\n',
 '<p>Hello {{ customer.name }},</p><p>the hold of {{ event.amount_display }} on your card for your stay at {{ booking.resource_name }} is released. Thank you for staying!</p><p><a href="{{ link }}">Details</a></p>');

-- An unanswered request expires too: the customer's message says which kind of wait ran out.
UPDATE notification_templates SET
  subject = '{% if event.from_status == "requested" %}Your request to {{ provider.name }} expired{% else %}Your hold with {{ provider.name }} has expired{% endif %}',
  text_body = E'Hello {{ customer.name }},\n\n{% if event.from_status == "requested" %}{{ provider.name }} did not answer your request for {{ booking.service_name }} from {{ booking.start_at }} in time. Nothing was charged, and the dates are free again.{% else %}the time we held for {{ booking.service_name }} on {{ booking.start_at }} was not paid in time and is free again.{% endif %}\n\n{{ link }}\n',
  html_body = '<p>Hello {{ customer.name }},</p><p>{% if event.from_status == "requested" %}{{ provider.name }} did not answer your request for <b>{{ booking.service_name }}</b> from {{ booking.start_at }} in time. Nothing was charged, and the dates are free again.{% else %}the time we held for <b>{{ booking.service_name }}</b> on {{ booking.start_at }} was not paid in time and is free again.{% endif %}</p><p><a href="{{ link }}">Details</a></p>'
WHERE event = 'booking_expired' AND audience = 'customer' AND provider_id IS NULL;
