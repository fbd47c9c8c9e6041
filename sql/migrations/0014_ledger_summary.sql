-- depends: 0013_refund_failed_notice
-- Fast ledger reads at millions of entries, the entries staying the only truth.
--
-- 1. Derived balances of the provider accounts (pending, available, in transit), kept by a statement-level
--    trigger in the same transaction as the entries they sum, so at every snapshot (a replica's too) they
--    equal the entries: per account (the balance reads these) and per account and UTC day (a statement's
--    opening balance reads the days before it, then the entries of its first day). Platform accounts are
--    not summarised: every capture touches them, and a row they all updated would serialise every posting
--    on its lock. A provider's postings are spread over STRIPES rows per account (by backend), so that
--    concurrent postings for one provider do not queue on one row lock either.
--    `ledger_summary_drift` (sql/queries/ledger.sql) proves the sums equal the entries;
--    `ledger_rebuild_summary` rebuilds them from the entries (they are derived data: never the truth).
-- 2. Credits that mature later (available_at after the posting) indexed on their own, so "not yet
--    available" is an index range over the maturity window instead of a pass over the account's history.
-- 3. The balance check at commit runs once per ledger transaction instead of once per entry, and the
--    ledger's look-ups keep their index plans however empty the ledger was when a connection first ran them.

CREATE TABLE ledger_account_totals (
  account_id bigint NOT NULL REFERENCES ledger_accounts (id),
  stripe     smallint NOT NULL CHECK (stripe BETWEEN 0 AND 7),
  amount     bigint NOT NULL,             -- sum of the account's entries
  paid_out   bigint NOT NULL DEFAULT 0,   -- of which in payout_paid transactions
  entries    bigint NOT NULL,             -- how many entries
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (account_id, stripe)
);

CREATE TABLE ledger_account_days (
  account_id bigint NOT NULL REFERENCES ledger_accounts (id),
  day        date NOT NULL,               -- the entries' created_at, UTC
  stripe     smallint NOT NULL CHECK (stripe BETWEEN 0 AND 7),
  amount     bigint NOT NULL,
  entries    bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (account_id, day, stripe)
);

-- Credits not available when posted (a maturity's share); the balance reads the ones still in the future.
CREATE INDEX ledger_entries_maturing_idx ON ledger_entries (account_id, available_at) INCLUDE (amount)
  WHERE amount < 0 AND available_at > created_at;

-- enable_seqscan off: a connection caches its plans on first use; one that first ran on a nearly empty
-- ledger would keep a sequential scan over entries (or transactions) while they grow to millions.
CREATE FUNCTION ledger_summarize() RETURNS trigger
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
  my_stripe smallint := pg_backend_pid() % 8;
BEGIN
  -- rows are locked in key order, so two postings never wait on each other in a cycle within a statement
  INSERT INTO ledger_account_days AS d (account_id, day, stripe, amount, entries)
  SELECT n.account_id, (n.created_at AT TIME ZONE 'UTC')::date, my_stripe, sum(n.amount), count(*)
  FROM added n JOIN ledger_accounts a ON a.id = n.account_id AND a.provider_id IS NOT NULL
  GROUP BY 1, 2 ORDER BY 1, 2
  ON CONFLICT (account_id, day, stripe) DO UPDATE
    SET amount = d.amount + excluded.amount, entries = d.entries + excluded.entries, updated_at = now();
  INSERT INTO ledger_account_totals AS s (account_id, stripe, amount, paid_out, entries)
  SELECT n.account_id, my_stripe, sum(n.amount),
         coalesce(sum(n.amount) FILTER (WHERE t.kind = 'payout_paid'), 0), count(*)
  FROM added n JOIN ledger_accounts a ON a.id = n.account_id AND a.provider_id IS NOT NULL
  JOIN ledger_transactions t ON t.id = n.transaction_id
  GROUP BY 1 ORDER BY 1
  ON CONFLICT (account_id, stripe) DO UPDATE
    SET amount = s.amount + excluded.amount, paid_out = s.paid_out + excluded.paid_out,
        entries = s.entries + excluded.entries, updated_at = now();
  RETURN NULL;
END;
$$;
CREATE TRIGGER ledger_entries_summarize AFTER INSERT ON ledger_entries
  REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION ledger_summarize();

-- Balanced, checked once per ledger transaction: the first of its entries' deferred events checks every
-- entry it has then (sum zero per currency, each entry in its account's currency) and remembers the
-- highest entry id it saw; a later event of that transaction with an id at or below it is covered. An
-- entry added afterwards (a later statement, even after SET CONSTRAINTS ... IMMEDIATE fired the first
-- check) has a higher id (identity) and is checked again with all the others.
CREATE OR REPLACE FUNCTION ledger_check_balanced() RETURNS trigger
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
  seen text := current_setting('ledger.checked', true);
  bad record;
  top bigint;
BEGIN
  IF seen IS NOT NULL AND seen <> '' AND split_part(seen, ':', 1)::bigint = NEW.transaction_id
     AND NEW.id <= split_part(seen, ':', 2)::bigint THEN
    RETURN NULL;
  END IF;
  SELECT e.currency, sum(e.amount) AS total INTO bad
  FROM ledger_entries e WHERE e.transaction_id = NEW.transaction_id
  GROUP BY e.currency HAVING sum(e.amount) <> 0 LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'ledger transaction % does not balance in %: %', NEW.transaction_id, bad.currency, bad.total
      USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_balanced';
  END IF;
  SELECT max(e.id) INTO top FROM ledger_entries e WHERE e.transaction_id = NEW.transaction_id;
  IF EXISTS (SELECT 1 FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id
             WHERE e.transaction_id = NEW.transaction_id AND a.currency <> e.currency) THEN
    RAISE EXCEPTION 'entry currency is not its account''s (ledger transaction %)', NEW.transaction_id
      USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entry_currency';
  END IF;
  PERFORM set_config('ledger.checked', NEW.transaction_id || ':' || top, true);
  RETURN NULL;
END;
$$;

-- The account for (kind, provider, currency), created on first use; each branch an equality the unique
-- index answers (IS NOT DISTINCT FROM is not indexable: it scanned every account).
CREATE OR REPLACE FUNCTION ledger_account(p_kind text, p_provider uuid, p_currency text) RETURNS bigint
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
  found_id bigint;
BEGIN
  IF p_provider IS NULL THEN
    SELECT id INTO found_id FROM ledger_accounts
    WHERE kind = p_kind AND provider_id IS NULL AND currency = p_currency;
  ELSE
    SELECT id INTO found_id FROM ledger_accounts
    WHERE kind = p_kind AND provider_id = p_provider AND currency = p_currency;
  END IF;
  IF found_id IS NULL THEN
    INSERT INTO ledger_accounts (kind, provider_id, currency) VALUES (p_kind, p_provider, p_currency)
    ON CONFLICT (kind, provider_id, currency) DO NOTHING RETURNING id INTO found_id;
    IF found_id IS NULL THEN  -- a concurrent first use created it
      SELECT id INTO found_id FROM ledger_accounts
      WHERE kind = p_kind AND provider_id IS NOT DISTINCT FROM p_provider AND currency = p_currency;
    END IF;
  END IF;
  RETURN found_id;
END;
$$;

ALTER FUNCTION ledger_post(text, text, uuid, uuid, text, text, jsonb) SET enable_seqscan = off;

-- Rebuild the derived balances from the entries (after a restore that skipped triggers, or when the drift
-- check finds a difference). The SHARE lock waits for postings in flight and holds new ones back until
-- the rebuild commits, so no entry is counted twice or missed.
CREATE FUNCTION ledger_rebuild_summary() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  rebuilt bigint;
BEGIN
  LOCK TABLE ledger_entries IN SHARE MODE;
  DELETE FROM ledger_account_days;
  DELETE FROM ledger_account_totals;
  INSERT INTO ledger_account_days (account_id, day, stripe, amount, entries)
  SELECT e.account_id, (e.created_at AT TIME ZONE 'UTC')::date, 0, sum(e.amount), count(*)
  FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id AND a.provider_id IS NOT NULL
  GROUP BY 1, 2;
  INSERT INTO ledger_account_totals (account_id, stripe, amount, paid_out, entries)
  SELECT e.account_id, 0, sum(e.amount), coalesce(sum(e.amount) FILTER (WHERE t.kind = 'payout_paid'), 0), count(*)
  FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id AND a.provider_id IS NOT NULL
  JOIN ledger_transactions t ON t.id = e.transaction_id
  GROUP BY 1;
  GET DIAGNOSTICS rebuilt = ROW_COUNT;
  RETURN rebuilt;
END;
$$;

-- The sums of the entries already posted.
SELECT ledger_rebuild_summary();
