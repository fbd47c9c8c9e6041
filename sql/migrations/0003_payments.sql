-- depends: 0002_resource_views
-- Payments: a Stripe PaymentIntent per booking, refunds, the raw Stripe events and what each one changed.
-- Money is BIGINT minor units + ISO-4217 currency (upper case here; Stripe speaks lower case).

-- The provider's cancellation policy is snapshotted onto the booking when the hold is placed.
ALTER TABLE bookings
  ADD COLUMN cancellation_policy jsonb NOT NULL DEFAULT '[]'
    CHECK (jsonb_typeof(cancellation_policy) = 'array');

-- An audit row may say more than its reason: e.g. the refund a cancellation computed and the policy
-- window it used.
ALTER TABLE booking_audit_log ADD COLUMN detail jsonb;

-- Payments: status changes only; who, what and how much never change (trigger below).
CREATE TABLE payments (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  booking_id        uuid NOT NULL REFERENCES bookings (id),
  payment_intent_id text NOT NULL UNIQUE,
  client_secret     text,
  amount            bigint NOT NULL CHECK (amount > 0),
  currency          char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  -- requires_payment: waiting for the customer; failed: the last attempt failed (the customer may retry
  -- on the same intent); succeeded: captured; canceled: the intent is dead.
  status            text NOT NULL CHECK (status IN ('requires_payment', 'failed', 'succeeded', 'canceled')),
  charge_id         text,
  amount_refunded   bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0 AND amount_refunded <= amount),
  failure_code      text,
  succeeded_at      timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  CHECK ((status = 'succeeded') = (succeeded_at IS NOT NULL))
);
-- One active payment per booking: no second intent can ever be charged for the same booking.
CREATE UNIQUE INDEX payments_one_active_per_booking ON payments (booking_id) WHERE status <> 'canceled';
CREATE INDEX payments_booking_id_idx ON payments (booking_id);

CREATE FUNCTION payments_keep_terms() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF (NEW.booking_id, NEW.payment_intent_id, NEW.amount, NEW.currency)
     IS DISTINCT FROM (OLD.booking_id, OLD.payment_intent_id, OLD.amount, OLD.currency) THEN
    RAISE EXCEPTION 'payment % terms are immutable', OLD.id
      USING ERRCODE = 'check_violation', CONSTRAINT = 'payments_terms_immutable';
  END IF;
  IF OLD.status = 'succeeded' AND NEW.status <> 'succeeded' THEN
    RAISE EXCEPTION 'payment % already succeeded', OLD.id
      USING ERRCODE = 'check_violation', CONSTRAINT = 'payments_succeeded_is_final';
  END IF;
  NEW.updated_at := now();
  RETURN NEW;
END;
$$;
CREATE TRIGGER payments_keep_terms BEFORE UPDATE ON payments FOR EACH ROW EXECUTE FUNCTION payments_keep_terms();

-- Financial rows are never deleted.
CREATE FUNCTION refuse_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% rows are never deleted', TG_TABLE_NAME
    USING ERRCODE = 'check_violation', CONSTRAINT = TG_TABLE_NAME || '_no_delete';
END;
$$;
CREATE TRIGGER payments_no_delete BEFORE DELETE ON payments FOR EACH ROW EXECUTE FUNCTION refuse_delete();

-- Refunds we issue (a cancellation by policy, or the automatic full refund of a payment that arrived after
-- its hold was gone) and refunds Stripe tells us about that we did not issue (external, e.g. dashboard).
CREATE TABLE refunds (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  booking_id       uuid NOT NULL REFERENCES bookings (id),
  payment_id       uuid NOT NULL REFERENCES payments (id),
  kind             text NOT NULL CHECK (kind IN ('cancellation', 'late_payment', 'external')),
  amount           bigint NOT NULL CHECK (amount > 0),
  currency         char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  status           text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
  stripe_refund_id text UNIQUE,
  policy           jsonb,  -- for a cancellation: the window applied, percent, hours before start
  failure_reason   text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  CHECK (status <> 'succeeded' OR stripe_refund_id IS NOT NULL)
);
-- We issue at most one refund per booking: a retried cancel or a redelivered event never refunds twice.
CREATE UNIQUE INDEX refunds_one_issued_per_booking ON refunds (booking_id) WHERE kind <> 'external';
CREATE INDEX refunds_payment_id_idx ON refunds (payment_id);
CREATE TRIGGER refunds_touch_updated_at BEFORE UPDATE ON refunds FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER refunds_no_delete BEFORE DELETE ON refunds FOR EACH ROW EXECUTE FUNCTION refuse_delete();

-- Stripe events exactly as received (verified), once each. The raw payload never changes; status says
-- whether the webhooks worker has applied it (or that its type is one we do not handle).
CREATE TABLE stripe_events (
  event_id     text PRIMARY KEY CHECK (length(event_id) BETWEEN 1 AND 255),
  type         text NOT NULL,
  object_id    text,
  stripe_created timestamptz NOT NULL,
  payload      jsonb NOT NULL,
  status       text NOT NULL CHECK (status IN ('received', 'applied', 'ignored')),
  job_id       uuid REFERENCES jobs (id),
  processed_at timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  CHECK ((status = 'received') = (processed_at IS NULL))
);
CREATE INDEX stripe_events_job_id_idx ON stripe_events (job_id);
CREATE INDEX stripe_events_object_id_idx ON stripe_events (object_id);
CREATE INDEX stripe_events_received_idx ON stripe_events (created_at) WHERE status = 'received';

CREATE FUNCTION stripe_events_keep_payload() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF (NEW.event_id, NEW.type, NEW.payload) IS DISTINCT FROM (OLD.event_id, OLD.type, OLD.payload) THEN
    RAISE EXCEPTION 'stripe event % is immutable', OLD.event_id
      USING ERRCODE = 'check_violation', CONSTRAINT = 'stripe_events_immutable';
  END IF;
  NEW.updated_at := now();
  RETURN NEW;
END;
$$;
CREATE TRIGGER stripe_events_keep_payload BEFORE UPDATE ON stripe_events
  FOR EACH ROW EXECUTE FUNCTION stripe_events_keep_payload();

-- What applying an event changed (or why it changed nothing), so support can answer "what did this
-- webhook do". Insert-only.
CREATE TABLE stripe_event_effects (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id   text NOT NULL REFERENCES stripe_events (event_id),
  booking_id uuid REFERENCES bookings (id),
  effect     text NOT NULL CHECK (effect IN (
               'booking_paid', 'payment_failed', 'late_payment_refund', 'refund_recorded', 'no_change',
               'unknown_booking', 'amount_mismatch', 'ignored')),
  detail     jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_event_effects_event_id_idx ON stripe_event_effects (event_id);
CREATE INDEX stripe_event_effects_booking_id_idx ON stripe_event_effects (booking_id);
CREATE TRIGGER stripe_events_no_delete BEFORE DELETE ON stripe_events FOR EACH ROW EXECUTE FUNCTION refuse_delete();
