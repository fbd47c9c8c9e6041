-- Access: who may do what. Owners and staff are users with memberships of providers, signed in by magic link
-- into sessions; the booking widget holds a public token; a customer holds a token for one booking. Every
-- token is stored only as its SHA-256. Owner, staff and admin actions land in an append-only audit log.

CREATE TABLE users (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email         text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254),
  platform_role text CHECK (platform_role IN ('admin')),  -- a platform admin acts on every provider
  created_at    timestamptz NOT NULL DEFAULT now(),
  disabled_at   timestamptz
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE memberships (
  user_id     uuid NOT NULL REFERENCES users (id),
  provider_id uuid NOT NULL REFERENCES providers (id),
  role        text NOT NULL CHECK (role IN ('owner', 'staff')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  accepted_at timestamptz,  -- NULL: invited, not yet accepted (by the invitation's link); grants nothing
  PRIMARY KEY (user_id, provider_id)
);
CREATE INDEX memberships_provider_id_idx ON memberships (provider_id);

-- A sign-in (or invitation) link: single use, short-lived; a new one revokes the user's earlier open ones.
CREATE TABLE magic_links (
  id           uuid PRIMARY KEY,
  user_id      uuid NOT NULL REFERENCES users (id),
  purpose      text NOT NULL CHECK (purpose IN ('sign_in', 'invite')),
  provider_id  uuid REFERENCES providers (id),  -- an invitation's provider
  CHECK ((purpose = 'invite') = (provider_id IS NOT NULL)),
  token_sha256 bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  used_at      timestamptz,
  revoked_at   timestamptz
);
CREATE INDEX magic_links_open_idx ON magic_links (user_id) WHERE used_at IS NULL AND revoked_at IS NULL;

-- A session ends at expires_at (absolute), after SESSION_IDLE_SECONDS without a request, or when revoked.
CREATE TABLE sessions (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id      uuid NOT NULL REFERENCES users (id),
  token_sha256 bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
  created_at   timestamptz NOT NULL DEFAULT now(),
  last_seen_at timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  revoked_at   timestamptz,
  ip           inet,
  user_agent   text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id) WHERE revoked_at IS NULL;

-- Public tokens gain an id (to list and revoke by), a shown prefix, a name, the origins that may use them.
ALTER TABLE public_tokens
  ADD COLUMN id uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
  ADD COLUMN prefix text,
  ADD COLUMN name text CHECK (length(name) <= 200),
  ADD COLUMN allowed_origins text[] NOT NULL DEFAULT '{}',
  ADD COLUMN last_used_at timestamptz;

-- A booking's customer token (its hash) and the public token that created it (a widget reads its own).
ALTER TABLE bookings
  ADD COLUMN customer_token_sha256 bytea CHECK (length(customer_token_sha256) = 32),
  ADD COLUMN created_by_token_id uuid;
CREATE UNIQUE INDEX bookings_customer_token_idx ON bookings (customer_token_sha256)
  WHERE customer_token_sha256 IS NOT NULL;

-- The verified actor of a booking's audit entry: actor is the kind (customer, public_token, user, system,
-- scheduler, stripe); actor_id the user, token or booking id; actor_role the user's role then.
ALTER TABLE booking_audit_log ADD COLUMN actor_id text, ADD COLUMN actor_role text;

-- Who asked for a job (gateway-accepted jobs): its principal reads the job; the provider's members too.
ALTER TABLE jobs ADD COLUMN caller jsonb;

-- Owner audit log: every owner, staff and admin action, written in the action's transaction; append-only.
CREATE TABLE owner_audit_log (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  provider_id uuid REFERENCES providers (id),
  actor       text NOT NULL,  -- user, public_token, system
  actor_id    text,
  actor_role  text,
  action      text NOT NULL CHECK (action ~ '^[a-z_.]+$'),
  target_type text,
  target_id   text,
  before      jsonb,
  after       jsonb,
  request_id  text,
  ip          inet,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX owner_audit_log_provider_id_idx ON owner_audit_log (provider_id, id);

CREATE FUNCTION owner_audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'owner_audit_log is append-only: % refused', TG_OP
    USING ERRCODE = 'check_violation', CONSTRAINT = 'owner_audit_log_append_only';
END;
$$;
CREATE TRIGGER owner_audit_log_append_only BEFORE UPDATE OR DELETE ON owner_audit_log
  FOR EACH ROW EXECUTE FUNCTION owner_audit_refuse_change();
CREATE TRIGGER owner_audit_log_no_truncate BEFORE TRUNCATE ON owner_audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION owner_audit_refuse_change();

-- Mail to a user (a sign-in link, an invitation) goes through the same pipeline, with no provider.
ALTER TABLE deliveries ALTER COLUMN provider_id DROP NOT NULL,
  DROP CONSTRAINT deliveries_audience_check,
  ADD CONSTRAINT deliveries_audience_check CHECK (audience IN ('customer', 'provider', 'user'));
ALTER TABLE notification_templates DROP CONSTRAINT notification_templates_audience_check,
  ADD CONSTRAINT notification_templates_audience_check CHECK (audience IN ('customer', 'provider', 'user'));

INSERT INTO notification_templates (event, audience, subject, text_body, html_body) VALUES
('sign_in_link', 'user', 'Your sign-in link',
 E'Hello,\n\nopen this link within 15 minutes to sign in to Totem:\n\n{{ link }}\n\nIf you did not ask for it, ignore this message.\n',
 '<p>Hello,</p><p><a href="{{ link }}">Sign in to Totem</a> within 15 minutes.</p><p>If you did not ask for it, ignore this message.</p>'),
('member_invited', 'user', 'You are invited to {{ event.provider_name }} on Totem',
 E'Hello,\n\nyou are invited to {{ event.provider_name }} as {{ event.role }}. Open this link within 15 minutes to accept:\n\n{{ link }}\n',
 '<p>Hello,</p><p>you are invited to <b>{{ event.provider_name }}</b> as {{ event.role }}.</p><p><a href="{{ link }}">Accept the invitation</a> within 15 minutes.</p>');
