-- Totem initial schema: catalog, bookings (+ audit, transitions), outbox, jobs, idempotency keys,
-- public tokens, scheduler leases. Amounts are BIGINT minor units + ISO-4217 currency; time is timestamptz.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE FUNCTION is_time_zone(tz text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
  PERFORM now() AT TIME ZONE tz;
  RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
  RETURN false;
END;
$$;

-- Catalog (mutable, soft-deleted) ---------------------------------------------------------------

CREATE TABLE providers (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug             text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
  name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  time_zone        text NOT NULL CHECK (is_time_zone(time_zone)),
  currency         char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  commission_bps   integer NOT NULL DEFAULT 1000 CHECK (commission_bps BETWEEN 0 AND 10000),
  hold_ttl_seconds integer CHECK (hold_ttl_seconds BETWEEN 30 AND 86400),
  -- refund windows, e.g. [{"min_hours_before_start": 24, "refund_percent": 100}, ...]; snapshotted on payment
  cancellation_policy jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(cancellation_policy) = 'array'),
  payout_account   text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  deleted_at       timestamptz
);

CREATE TABLE resources (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  provider_id  uuid NOT NULL REFERENCES providers (id),
  kind         text NOT NULL CHECK (kind IN ('slot', 'stay')),
  name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  nightly_price bigint CHECK (nightly_price >= 0),
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  deleted_at   timestamptz,
  CHECK ((kind = 'stay') = (nightly_price IS NOT NULL))
);
CREATE INDEX resources_provider_id_idx ON resources (provider_id);

CREATE TABLE services (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  provider_id      uuid NOT NULL REFERENCES providers (id),
  name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  duration_minutes integer NOT NULL CHECK (duration_minutes BETWEEN 5 AND 1440),
  price            bigint NOT NULL CHECK (price >= 0),
  currency         char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  deleted_at       timestamptz
);
CREATE INDEX services_provider_id_idx ON services (provider_id);

CREATE TABLE resource_services (
  resource_id uuid NOT NULL REFERENCES resources (id),
  service_id  uuid NOT NULL REFERENCES services (id),
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (resource_id, service_id)
);
CREATE INDEX resource_services_service_id_idx ON resource_services (service_id);

-- Weekly opening hours of a resource, in its provider's time zone (weekday: 1 = Monday .. 7 = Sunday).
CREATE TABLE resource_hours (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  resource_id uuid NOT NULL REFERENCES resources (id),
  weekday     smallint NOT NULL CHECK (weekday BETWEEN 1 AND 7),
  opens_at    time NOT NULL,
  closes_at   time NOT NULL CHECK (closes_at > opens_at),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX resource_hours_resource_id_idx ON resource_hours (resource_id, weekday);

-- Periods a resource cannot be booked (holidays, maintenance), in absolute time.
CREATE TABLE resource_blocks (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  resource_id uuid NOT NULL REFERENCES resources (id),
  period      tstzrange NOT NULL CHECK (NOT isempty(period) AND NOT lower_inf(period) AND NOT upper_inf(period)),
  reason      text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  deleted_at  timestamptz
);
CREATE INDEX resource_blocks_resource_period_idx ON resource_blocks USING gist (resource_id, period)
  WHERE deleted_at IS NULL;

-- Public tokens for the booking widget; only a SHA-256 of the token is stored.
CREATE TABLE public_tokens (
  token_sha256 bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
  provider_id  uuid NOT NULL REFERENCES providers (id),
  created_at   timestamptz NOT NULL DEFAULT now(),
  revoked_at   timestamptz
);
CREATE INDEX public_tokens_provider_id_idx ON public_tokens (provider_id);

-- Bookings (historical rows: snapshots, no FKs to mutable catalog rows) ----------------------------

CREATE TABLE booking_transitions (
  from_status text NOT NULL,
  to_status   text NOT NULL,
  PRIMARY KEY (from_status, to_status)
);
INSERT INTO booking_transitions (from_status, to_status) VALUES
  ('pending_payment', 'paid'),
  ('pending_payment', 'expired'),
  ('pending_payment', 'cancelled'),
  ('paid', 'cancelled'),
  ('paid', 'completed');

CREATE TABLE bookings (
  id               uuid PRIMARY KEY,
  kind             text NOT NULL CHECK (kind IN ('slot', 'stay')),
  status           text NOT NULL
                   CHECK (status IN ('pending_payment', 'paid', 'expired', 'cancelled', 'completed')),
  resource_id      uuid NOT NULL,
  provider_id      uuid NOT NULL,
  period           tstzrange NOT NULL
                   CHECK (NOT isempty(period) AND lower_inc(period) AND NOT upper_inc(period)
                          AND NOT lower_inf(period) AND NOT upper_inf(period)),
  amount           bigint NOT NULL CHECK (amount >= 0),
  currency         char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  service_snapshot jsonb NOT NULL,
  customer         jsonb NOT NULL,
  hold_expires_at  timestamptz,
  created_by_job   uuid NOT NULL UNIQUE,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  CHECK (status <> 'pending_payment' OR hold_expires_at IS NOT NULL),
  -- No double booking, ever: bookings that hold time never overlap on one resource.
  CONSTRAINT bookings_no_overlap EXCLUDE USING gist (resource_id WITH =, period WITH &&)
    WHERE (status IN ('pending_payment', 'paid', 'completed'))
);
CREATE INDEX bookings_provider_id_idx ON bookings (provider_id, created_at);
CREATE INDEX bookings_pending_hold_idx ON bookings (hold_expires_at) WHERE status = 'pending_payment';

-- Every status change goes through this table: the database itself refuses an illegal transition.
-- The trigger fires whenever status is SET, so "cancelled -> cancelled" is refused like any other.
CREATE FUNCTION bookings_check_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM booking_transitions WHERE from_status = OLD.status AND to_status = NEW.status) THEN
    RAISE EXCEPTION 'booking % cannot go from % to %', OLD.id, OLD.status, NEW.status
      USING ERRCODE = 'check_violation', CONSTRAINT = 'bookings_valid_transition';
  END IF;
  RETURN NEW;
END;
$$;
CREATE TRIGGER bookings_check_transition BEFORE UPDATE OF status ON bookings
  FOR EACH ROW EXECUTE FUNCTION bookings_check_transition();

CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END;
$$;
CREATE TRIGGER bookings_touch_updated_at BEFORE UPDATE ON bookings
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE booking_audit_log (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  booking_id  uuid NOT NULL REFERENCES bookings (id),
  actor       text NOT NULL,
  from_status text,
  to_status   text NOT NULL,
  reason      text,
  job_id      uuid,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX booking_audit_log_booking_id_idx ON booking_audit_log (booking_id, id);

-- Outbox: every state change stages its event in the same transaction; the relay publishes it.
CREATE TABLE outbox (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  topic        text NOT NULL,
  aggregate_id uuid NOT NULL,
  payload      jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;

-- Jobs: Postgres is the source of truth; Redis only delivers job ids. ------------------------------

CREATE TABLE jobs (
  id            uuid PRIMARY KEY,
  type          text NOT NULL,
  queue         text NOT NULL,
  actor         text NOT NULL,
  payload       jsonb NOT NULL,
  status        text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
  attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  max_attempts  integer NOT NULL DEFAULT 5 CHECK (max_attempts > 0),
  claim_token   uuid,
  claimed_until timestamptz,
  enqueued_at   timestamptz NOT NULL DEFAULT now(),
  result        jsonb,
  error         jsonb,
  request_id    text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CHECK ((status = 'running') = (claim_token IS NOT NULL AND claimed_until IS NOT NULL)),
  CHECK ((status = 'succeeded') = (result IS NOT NULL)),
  CHECK ((status = 'failed') = (error IS NOT NULL))
);
CREATE INDEX jobs_queued_idx ON jobs (enqueued_at) WHERE status = 'queued';
CREATE INDEX jobs_running_idx ON jobs (claimed_until) WHERE status = 'running';

-- Idempotency keys, scoped to the caller. The row, its job and its stored response commit together.
CREATE TABLE idempotency_keys (
  scope           text NOT NULL,
  key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
  fingerprint     bytea NOT NULL CHECK (length(fingerprint) = 32),
  method          text NOT NULL,
  path            text NOT NULL,
  job_id          uuid REFERENCES jobs (id),
  response_status integer NOT NULL CHECK (response_status BETWEEN 200 AND 599),
  response_body   jsonb NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  expires_at      timestamptz NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
CREATE INDEX idempotency_keys_job_id_idx ON idempotency_keys (job_id);

-- Single-leader scheduler lease.
CREATE TABLE scheduler_leases (
  name       text PRIMARY KEY,
  holder     text NOT NULL,
  expires_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
