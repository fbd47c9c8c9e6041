-- Notifications: the outbox relay turns each event into deliveries, one per (event, channel, recipient);
-- the notifications pool sends them (email over SMTP, Standard Webhooks to a provider's endpoints) and
-- records every attempt; in-app notifications are written by the relay itself. Retries follow a schedule;
-- after the last attempt a delivery is dead, listed for SREs and owners, and can be retried by hand.

-- Where a provider's own mail goes (new bookings, cancellations, payouts, a disabled endpoint).
ALTER TABLE providers ADD COLUMN contact_email text CHECK (contact_email ~ '^[^@\s]+@[^@\s]+$');

-- Email templates: one per (event, audience), the platform's default (provider_id NULL) or a provider's own
-- override. An event mails an audience only if a template exists for it: the table is the routing too.
-- Bodies are jinja2 templates rendered in a sandbox.
CREATE TABLE notification_templates (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  provider_id uuid REFERENCES providers (id),
  event       text NOT NULL CHECK (event ~ '^[a-z_]+$'),
  audience    text NOT NULL CHECK (audience IN ('customer', 'provider')),
  subject     text NOT NULL CHECK (length(subject) BETWEEN 1 AND 500),
  text_body   text NOT NULL,
  html_body   text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX notification_templates_one_per_event
  ON notification_templates (event, audience, coalesce(provider_id, '00000000-0000-0000-0000-000000000000'));
CREATE INDEX notification_templates_provider_id_idx ON notification_templates (provider_id);
CREATE TRIGGER notification_templates_touch_updated_at BEFORE UPDATE ON notification_templates
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- A provider's webhook endpoints (Standard Webhooks v1). The signing secret must be readable to sign with
-- (an HMAC key, unlike a bearer token we only verify); the previous one stays valid for a day after a
-- rotation, so both signatures are sent meanwhile.
CREATE TABLE webhook_endpoints (
  id                         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  provider_id                uuid NOT NULL REFERENCES providers (id),
  url                        text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2000),
  events                     text[] NOT NULL DEFAULT '{}',  -- empty: every event
  secret                     text NOT NULL CHECK (secret ~ '^whsec_'),
  previous_secret            text CHECK (previous_secret ~ '^whsec_'),
  previous_secret_expires_at timestamptz,
  status                     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  disabled_reason            text,
  failing_since              timestamptz,
  created_at                 timestamptz NOT NULL DEFAULT now(),
  updated_at                 timestamptz NOT NULL DEFAULT now(),
  deleted_at                 timestamptz,
  CHECK ((status = 'disabled') = (disabled_reason IS NOT NULL))
);
CREATE INDEX webhook_endpoints_provider_id_idx ON webhook_endpoints (provider_id) WHERE deleted_at IS NULL;
CREATE TRIGGER webhook_endpoints_touch_updated_at BEFORE UPDATE ON webhook_endpoints
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- One row per (event, channel, recipient): the relay's fan-out is idempotent by this key.
CREATE TABLE deliveries (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  event_id        bigint NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
  topic           text NOT NULL,
  provider_id     uuid NOT NULL REFERENCES providers (id),
  channel         text NOT NULL CHECK (channel IN ('email', 'webhook', 'in_app')),
  recipient       text NOT NULL,  -- an email address, a webhook endpoint id, or the provider id (in-app)
  audience        text CHECK (audience IN ('customer', 'provider')),
  endpoint_id     uuid REFERENCES webhook_endpoints (id),
  status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed', 'dead')),
  attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  next_attempt_at timestamptz,
  last_error      text,
  delivered_at    timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (event_id, channel, recipient),
  CHECK ((status = 'delivered') = (delivered_at IS NOT NULL)),
  CHECK ((channel = 'webhook') = (endpoint_id IS NOT NULL)),
  CHECK ((channel = 'email') = (audience IS NOT NULL))
);
CREATE INDEX deliveries_provider_status_idx ON deliveries (provider_id, status, created_at, id);
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'failed';
CREATE INDEX deliveries_endpoint_id_idx ON deliveries (endpoint_id, created_at) WHERE endpoint_id IS NOT NULL;
CREATE INDEX deliveries_created_at_idx ON deliveries (created_at);
CREATE TRIGGER deliveries_touch_updated_at BEFORE UPDATE ON deliveries
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- Every attempt: what the receiver answered (or why there was no answer), and how long it took.
CREATE TABLE delivery_attempts (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  delivery_id      uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
  attempt          integer NOT NULL CHECK (attempt > 0),
  succeeded        boolean NOT NULL,
  status_code      integer,
  duration_ms      integer NOT NULL CHECK (duration_ms >= 0),
  error            text,
  response_excerpt text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (delivery_id, attempt)
);

-- The owner's in-app feed, written by the relay in the same transaction as the fan-out.
CREATE TABLE notifications (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  provider_id uuid NOT NULL REFERENCES providers (id),
  event_id    bigint NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
  topic       text NOT NULL,
  booking_id  uuid,
  payload     jsonb NOT NULL,
  read_at     timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (event_id, provider_id)
);
CREATE INDEX notifications_feed_idx ON notifications (provider_id, created_at DESC, id DESC);
CREATE INDEX notifications_unread_idx ON notifications (provider_id, created_at DESC, id DESC) WHERE read_at IS NULL;
CREATE INDEX outbox_published_at_idx ON outbox (published_at) WHERE published_at IS NOT NULL;
-- The re-drive looks up a delivery's open send job by payload.
CREATE INDEX jobs_delivery_id_idx ON jobs ((payload->>'delivery_id')) WHERE payload ? 'delivery_id';
-- Retention finds finished jobs by age (the scheduler purges them after RETENTION_JOBS_DAYS).
CREATE INDEX jobs_finished_idx ON jobs (updated_at) WHERE status IN ('succeeded', 'failed');

-- Wake the relays: one NOTIFY per inserting statement (not per row), with an empty payload, so Postgres
-- folds every notification of a transaction into one. Created DISABLED, by the numbers (`./dev bench`):
-- NOTIFY takes a database-wide lock at commit and cut the booking job's pgbench ceiling to ~85 %, for an
-- outbox lag of ~50 ms instead of the relays' polling interval (RELAY_POLL_SECONDS, 0.25 s). An operator who
-- wants the lower lag runs `ALTER TABLE outbox ENABLE TRIGGER outbox_notify`; the relays LISTEN either way.
CREATE FUNCTION outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('totem_outbox', '');
  RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
ALTER TABLE outbox DISABLE TRIGGER outbox_notify;

-- The platform's default email templates. Variables: booking (id, status, start_at, end_at, amount,
-- currency, service_name, resource_name), provider (name), customer (name), link (absolute), event.
INSERT INTO notification_templates (event, audience, subject, text_body, html_body) VALUES
('booking_created', 'customer', 'Your booking with {{ provider.name }} is held',
 E'Hello {{ customer.name }},\n\nwe are holding {{ booking.service_name }} on {{ booking.start_at }} for you. Pay {{ booking.amount_display }} to confirm it.\n\n{{ link }}\n',
 '<p>Hello {{ customer.name }},</p><p>we are holding <b>{{ booking.service_name }}</b> on {{ booking.start_at }} for you. Pay {{ booking.amount_display }} to confirm it.</p><p><a href="{{ link }}">Your booking</a></p>'),
('booking_paid', 'customer', 'Booking confirmed: {{ booking.service_name }} with {{ provider.name }}',
 E'Hello {{ customer.name }},\n\nyour booking of {{ booking.service_name }} on {{ booking.start_at }} is confirmed.\n\n{{ link }}\n',
 '<p>Hello {{ customer.name }},</p><p>your booking of <b>{{ booking.service_name }}</b> on {{ booking.start_at }} is confirmed.</p><p><a href="{{ link }}">Your booking</a></p>'),
('booking_expired', 'customer', 'Your hold with {{ provider.name }} has expired',
 E'Hello {{ customer.name }},\n\nthe time we held for {{ booking.service_name }} on {{ booking.start_at }} was not paid in time and is free again.\n\n{{ link }}\n',
 '<p>Hello {{ customer.name }},</p><p>the time we held for <b>{{ booking.service_name }}</b> on {{ booking.start_at }} was not paid in time and is free again.</p><p><a href="{{ link }}">Details</a></p>'),
('booking_cancelled', 'customer', 'Booking cancelled: {{ booking.service_name }} with {{ provider.name }}',
 E'Hello {{ customer.name }},\n\nyour booking of {{ booking.service_name }} on {{ booking.start_at }} is cancelled.\n\n{{ link }}\n',
 '<p>Hello {{ customer.name }},</p><p>your booking of <b>{{ booking.service_name }}</b> on {{ booking.start_at }} is cancelled.</p><p><a href="{{ link }}">Details</a></p>'),
('booking_completed', 'customer', 'Thank you for visiting {{ provider.name }}',
 E'Hello {{ customer.name }},\n\nthank you for your booking of {{ booking.service_name }}.\n\n{{ link }}\n',
 '<p>Hello {{ customer.name }},</p><p>thank you for your booking of <b>{{ booking.service_name }}</b>.</p><p><a href="{{ link }}">Details</a></p>'),
('payment_failed', 'customer', 'Your payment to {{ provider.name }} did not go through',
 E'Hello {{ customer.name }},\n\nyour payment for {{ booking.service_name }} on {{ booking.start_at }} failed. You can try another card until your hold expires.\n\n{{ link }}\n',
 '<p>Hello {{ customer.name }},</p><p>your payment for <b>{{ booking.service_name }}</b> on {{ booking.start_at }} failed. You can try another card until your hold expires.</p><p><a href="{{ link }}">Pay again</a></p>'),
('refund_issued', 'customer', 'Refund from {{ provider.name }}',
 E'Hello {{ customer.name }},\n\nwe refunded {{ event.amount_display }} for {{ booking.service_name }}.\n\n{{ link }}\n',
 '<p>Hello {{ customer.name }},</p><p>we refunded {{ event.amount_display }} for <b>{{ booking.service_name }}</b>.</p><p><a href="{{ link }}">Details</a></p>'),
('booking_paid', 'provider', 'New booking: {{ booking.service_name }} on {{ booking.start_at }}',
 E'{{ customer.name }} booked {{ booking.service_name }} with {{ booking.resource_name }} on {{ booking.start_at }} ({{ booking.amount_display }}).\n\n{{ link }}\n',
 '<p>{{ customer.name }} booked <b>{{ booking.service_name }}</b> with {{ booking.resource_name }} on {{ booking.start_at }} ({{ booking.amount_display }}).</p><p><a href="{{ link }}">Open the booking</a></p>'),
('booking_cancelled', 'provider', 'Cancelled: {{ booking.service_name }} on {{ booking.start_at }}',
 E'The booking of {{ booking.service_name }} with {{ booking.resource_name }} on {{ booking.start_at }} was cancelled.\n\n{{ link }}\n',
 '<p>The booking of <b>{{ booking.service_name }}</b> with {{ booking.resource_name }} on {{ booking.start_at }} was cancelled.</p><p><a href="{{ link }}">Open the booking</a></p>'),
('payout_sent', 'provider', 'Payout sent: {{ event.amount_display }}',
 E'We sent you {{ event.amount_display }}.\n\n{{ link }}\n',
 '<p>We sent you {{ event.amount_display }}.</p><p><a href="{{ link }}">Your payouts</a></p>'),
('webhook_endpoint_disabled', 'provider', 'Your webhook endpoint was disabled',
 E'We disabled your webhook endpoint {{ event.url }}: {{ event.reason }}. Fix it, then recover the failed messages from your console.\n\n{{ link }}\n',
 '<p>We disabled your webhook endpoint {{ event.url }}: {{ event.reason }}. Fix it, then recover the failed messages from your console.</p><p><a href="{{ link }}">Webhook endpoints</a></p>');

-- Nothing read the outbox before this migration: what it holds happened before notifications existed, and
-- must not reach anyone now (a customer mailed about every booking they ever made). It counts as published.
UPDATE outbox SET published_at = now() WHERE published_at IS NULL;
