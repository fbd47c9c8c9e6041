-- depends: 0003_payments
-- Money: an immutable double-entry ledger, settlement periods, payout batches and payouts, reconciliation.
--
-- Sign convention: an entry's amount is positive for a debit and negative for a credit (BIGINT minor
-- units). Every transaction's entries sum to zero per currency (checked at commit). Accounts:
--   platform_cash        (platform) money held at Stripe: captures in, refunds and transfers out
--   platform_commission  (platform) our share of each capture
--   provider_pending     (provider) payable for bookings not yet completed
--   provider_available   (provider) payable that matures at available_at and can be paid out
--   payouts_in_transit   (provider) payouts sent to Stripe and not yet confirmed
-- Liability/revenue balances are shown as -(sum of amounts).

-- The commission is snapshotted onto the booking with the price and the policy.
ALTER TABLE bookings ADD COLUMN commission_bps integer NOT NULL DEFAULT 0
  CHECK (commission_bps BETWEEN 0 AND 10000);

-- How often a provider is paid out (periods bounded by local midnights in its time zone).
ALTER TABLE providers ADD COLUMN payout_schedule text NOT NULL DEFAULT 'daily'
  CHECK (payout_schedule IN ('daily', 'weekly'));

CREATE TABLE ledger_accounts (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind        text NOT NULL CHECK (kind IN ('platform_cash', 'platform_commission', 'provider_pending',
                                            'provider_available', 'payouts_in_transit')),
  provider_id uuid REFERENCES providers (id),
  currency    char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  created_at  timestamptz NOT NULL DEFAULT now(),
  CHECK ((provider_id IS NULL) = (kind LIKE 'platform_%')),
  UNIQUE NULLS NOT DISTINCT (kind, provider_id, currency)
);
CREATE INDEX ledger_accounts_provider_id_idx ON ledger_accounts (provider_id);

CREATE TABLE ledger_transactions (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  idempotency_key text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  kind            text NOT NULL CHECK (kind IN ('capture', 'refund', 'maturity', 'payout_initiated',
                                                'payout_paid', 'payout_returned')),
  booking_id      uuid REFERENCES bookings (id),
  payout_id       uuid,  -- FK added below (payouts is defined after)
  external_ref    text,  -- Stripe's id for what this records: charge, refund or transfer
  fingerprint     bytea NOT NULL CHECK (length(fingerprint) = 32),  -- sha256 of the canonical entries
  description     text,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_transactions_booking_id_idx ON ledger_transactions (booking_id);
CREATE INDEX ledger_transactions_payout_id_idx ON ledger_transactions (payout_id);
CREATE INDEX ledger_transactions_external_ref_idx ON ledger_transactions (external_ref);

CREATE TABLE ledger_entries (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  transaction_id bigint NOT NULL REFERENCES ledger_transactions (id),
  account_id     bigint NOT NULL REFERENCES ledger_accounts (id),
  amount         bigint NOT NULL CHECK (amount <> 0),
  currency       char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  available_at   timestamptz NOT NULL DEFAULT now(),
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_transaction_id_idx ON ledger_entries (transaction_id);
-- Balances and statements read an account's entries in time order without touching the heap.
CREATE INDEX ledger_entries_account_idx ON ledger_entries (account_id, created_at, id)
  INCLUDE (amount, currency, available_at, transaction_id);

-- Immutable: the ledger is corrected by compensating transactions, never by edits.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_append_only';
END;
$$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

-- Balanced: at commit, every transaction touched sums to zero in each currency, and an entry's currency
-- is its account's.
CREATE FUNCTION ledger_check_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  bad record;
BEGIN
  SELECT e.currency, sum(e.amount) AS total INTO bad
  FROM ledger_entries e WHERE e.transaction_id = NEW.transaction_id
  GROUP BY e.currency HAVING sum(e.amount) <> 0 LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'ledger transaction % does not balance in %: %', NEW.transaction_id, bad.currency, bad.total
      USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_balanced';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM ledger_accounts a WHERE a.id = NEW.account_id AND a.currency = NEW.currency) THEN
    RAISE EXCEPTION 'entry currency % is not its account''s', NEW.currency
      USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entry_currency';
  END IF;
  RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

-- The account for (kind, provider, currency), created on first use.
CREATE FUNCTION ledger_account(p_kind text, p_provider uuid, p_currency text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  found_id bigint;
BEGIN
  SELECT id INTO found_id FROM ledger_accounts
  WHERE kind = p_kind AND provider_id IS NOT DISTINCT FROM p_provider AND currency = p_currency;
  IF found_id IS NULL THEN
    INSERT INTO ledger_accounts (kind, provider_id, currency) VALUES (p_kind, p_provider, p_currency)
    ON CONFLICT (kind, provider_id, currency) DO NOTHING RETURNING id INTO found_id;
    IF found_id IS NULL THEN
      SELECT id INTO found_id FROM ledger_accounts
      WHERE kind = p_kind AND provider_id IS NOT DISTINCT FROM p_provider AND currency = p_currency;
    END IF;
  END IF;
  RETURN found_id;
END;
$$;

-- Post one transaction, once. p_entries: [{kind, provider_id, currency, amount, available_at?}, ...].
-- A replay under the same key with the same entries returns the first transaction and posts nothing;
-- with different entries it is refused loudly (TigerBeetle's exists_with_different_amount).
CREATE FUNCTION ledger_post(p_key text, p_kind text, p_booking uuid, p_payout uuid, p_external_ref text,
                            p_description text, p_entries jsonb) RETURNS TABLE (transaction_id bigint, posted boolean)
LANGUAGE plpgsql AS $$
DECLARE
  canonical bytea;
  existing record;
  new_id bigint;
BEGIN
  SELECT sha256(convert_to(coalesce(jsonb_agg(e ORDER BY e->>'kind', e->>'provider_id', e->>'currency',
                                                    (e->>'amount')::bigint, e->>'available_at'), '[]')::text, 'UTF8'))
  INTO canonical
  FROM jsonb_array_elements(p_entries) e;
  INSERT INTO ledger_transactions (idempotency_key, kind, booking_id, payout_id, external_ref, fingerprint, description)
  VALUES (p_key, p_kind, p_booking, p_payout, p_external_ref, canonical, p_description)
  ON CONFLICT (idempotency_key) DO NOTHING
  RETURNING id INTO new_id;
  IF new_id IS NULL THEN
    SELECT t.id, t.fingerprint, t.kind INTO existing FROM ledger_transactions t WHERE t.idempotency_key = p_key;
    IF existing.fingerprint <> canonical OR existing.kind <> p_kind THEN
      RAISE EXCEPTION 'ledger transaction % exists with different entries', p_key
        USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_exists_with_different_entries';
    END IF;
    RETURN QUERY SELECT existing.id, false;
    RETURN;
  END IF;
  INSERT INTO ledger_entries (transaction_id, account_id, amount, currency, available_at)
  SELECT new_id, ledger_account(e->>'kind', (e->>'provider_id')::uuid, e->>'currency'), (e->>'amount')::bigint,
         e->>'currency', coalesce((e->>'available_at')::timestamptz, now())
  FROM jsonb_array_elements(p_entries) e
  WHERE (e->>'amount')::bigint <> 0;
  RETURN QUERY SELECT new_id, true;
END;
$$;

-- Settlement ------------------------------------------------------------------------------------------

CREATE TABLE settlement_periods (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  provider_id uuid NOT NULL REFERENCES providers (id),
  schedule    text NOT NULL CHECK (schedule IN ('daily', 'weekly')),
  period      tstzrange NOT NULL CHECK (NOT isempty(period) AND lower_inc(period) AND NOT upper_inc(period)),
  closed_at   timestamptz NOT NULL DEFAULT now(),
  created_at  timestamptz NOT NULL DEFAULT now(),
  -- a period is closed once: two schedulers racing insert one row
  CONSTRAINT settlement_periods_no_overlap EXCLUDE USING gist (provider_id WITH =, period WITH &&)
);

CREATE TABLE payout_batches (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  provider_id uuid NOT NULL REFERENCES providers (id),
  period_id   uuid NOT NULL REFERENCES settlement_periods (id),
  currency    char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  total       bigint NOT NULL CHECK (total > 0),
  destination text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (period_id, currency)
);
CREATE INDEX payout_batches_provider_id_idx ON payout_batches (provider_id, created_at);

CREATE TABLE payouts (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  batch_id           uuid NOT NULL REFERENCES payout_batches (id),
  provider_id        uuid NOT NULL REFERENCES providers (id),
  booking_id         uuid NOT NULL REFERENCES bookings (id),
  amount             bigint NOT NULL CHECK (amount > 0),
  currency           char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  status             text NOT NULL CHECK (status IN ('pending', 'paid', 'failed')),
  stripe_transfer_id text UNIQUE,
  failure_reason     text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  CHECK ((status = 'paid') = (stripe_transfer_id IS NOT NULL)),
  CHECK (status <> 'failed' OR failure_reason IS NOT NULL)
);
-- One payout per booking; a failed one (money returned to available) does not count.
CREATE UNIQUE INDEX payouts_one_per_booking ON payouts (booking_id) WHERE status <> 'failed';
CREATE INDEX payouts_batch_id_idx ON payouts (batch_id);
CREATE INDEX payouts_provider_id_idx ON payouts (provider_id, created_at);
CREATE INDEX payouts_pending_idx ON payouts (created_at) WHERE status = 'pending';
-- The send jobs of one payout (the scheduler re-drives a pending payout whose job gave up).
CREATE INDEX jobs_payout_send_idx ON jobs ((payload->>'payout_id'), updated_at) WHERE type = 'payout.send';
CREATE TRIGGER payouts_touch_updated_at BEFORE UPDATE ON payouts FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER payouts_no_delete BEFORE DELETE ON payouts FOR EACH ROW EXECUTE FUNCTION refuse_delete();
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_payout_id_fkey
  FOREIGN KEY (payout_id) REFERENCES payouts (id);

-- Reconciliation -------------------------------------------------------------------------------------

CREATE TABLE reconciliation_runs (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  checked     integer NOT NULL DEFAULT 0,
  mismatches  integer NOT NULL DEFAULT 0,
  started_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reconciliations (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id      uuid NOT NULL REFERENCES reconciliation_runs (id),
  kind        text NOT NULL CHECK (kind IN ('capture', 'refund', 'payout')),
  reference   text NOT NULL,  -- Stripe's id (charge, refund, transfer)
  problem     text NOT NULL CHECK (problem IN ('missing_at_stripe', 'missing_in_ledger', 'amount_differs')),
  ledger_amount bigint,
  stripe_amount bigint,
  currency    char(3),
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reconciliations_run_id_idx ON reconciliations (run_id);
