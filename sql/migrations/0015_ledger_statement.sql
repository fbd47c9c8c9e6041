-- depends: 0014_ledger_summary
-- A statement page read in order from one index, and postings for one provider that no longer queue on its
-- derived balances.
--
-- 1. Each entry carries what a statement shows of its account and transaction: the account's provider, the
--    transaction's kind, booking, payout and description. All of them are immutable (append-only tables),
--    so a copy made at insert stays true; a BEFORE INSERT trigger makes it from the rows themselves, for
--    every insert path (ledger_post, a restore, a test), so it cannot be forgotten or supplied wrong, and
--    `ledger_summary_drift` proves the copies equal their sources. A provider's statement page is then one
--    range of (provider_id, created_at, id): no per-account merge and sort of up to 3 × limit rows, and no
--    look-up of a transaction per row (measured at 1M entries: those were two thirds of the page's time).
-- 2. The derived balances of 0014 were striped by backend pid % 8: 16 connections posting for one provider
--    met on the same stripe rows and each waited for the other's commit (Lock:transactionid was 40 % of
--    the wait samples; posting ran at 60 % of its speed with the trigger off). A posting now takes the
--    first stripe of the account no one holds (FOR UPDATE SKIP LOCKED) and adds a stripe when all are
--    held, so stripes grow to the number of concurrent posters of that account and a posting never waits
--    on another's summary row. The day sums use the stripe of the account total the posting holds, so
--    they are never contended either. The trigger reads the copies of (1) instead of joining accounts and
--    transactions.

ALTER TABLE ledger_entries
  ADD COLUMN provider_id uuid,          -- the account's (NULL: a platform account)
  ADD COLUMN transaction_kind text,     -- the transaction's kind, booking, payout and description
  ADD COLUMN booking_id uuid,
  ADD COLUMN payout_id uuid,
  ADD COLUMN description text;

CREATE FUNCTION ledger_entry_copy() RETURNS trigger
LANGUAGE plpgsql SET enable_seqscan = off AS $$
BEGIN
  SELECT a.provider_id INTO NEW.provider_id FROM ledger_accounts a WHERE a.id = NEW.account_id;
  SELECT t.kind, t.booking_id, t.payout_id, t.description
    INTO NEW.transaction_kind, NEW.booking_id, NEW.payout_id, NEW.description
  FROM ledger_transactions t WHERE t.id = NEW.transaction_id;
  RETURN NEW;
END;
$$;

-- The copies of the entries already posted (the append-only trigger would refuse this one-time fill). This
-- rewrites every entry under an exclusive lock: postings wait until the migration commits (47 s for 1.5M
-- entries on the 2-core bench machine under load); run it in a quiet hour.
ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only;
UPDATE ledger_entries e
SET provider_id = a.provider_id, transaction_kind = t.kind, booking_id = t.booking_id, payout_id = t.payout_id,
    description = t.description
FROM ledger_accounts a, ledger_transactions t
WHERE a.id = e.account_id AND t.id = e.transaction_id;
ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only;
ALTER TABLE ledger_entries ALTER COLUMN transaction_kind SET NOT NULL;

CREATE TRIGGER ledger_entries_copy BEFORE INSERT ON ledger_entries
  FOR EACH ROW EXECUTE FUNCTION ledger_entry_copy();

-- A provider's entries in statement order; the page reads the rest of each row from the heap, in order.
CREATE INDEX ledger_entries_provider_idx ON ledger_entries (provider_id, created_at, id)
  WHERE provider_id IS NOT NULL;

-- Stripes as many as an account's concurrent posters (bounded: beyond it a posting waits on a held one).
ALTER TABLE ledger_account_totals DROP CONSTRAINT ledger_account_totals_stripe_check,
  ADD CONSTRAINT ledger_account_totals_stripe_check CHECK (stripe BETWEEN 0 AND 255);
ALTER TABLE ledger_account_days DROP CONSTRAINT ledger_account_days_stripe_check,
  ADD CONSTRAINT ledger_account_days_stripe_check CHECK (stripe BETWEEN 0 AND 255);

CREATE OR REPLACE FUNCTION ledger_summarize() RETURNS trigger
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
  r record;
  held smallint;
BEGIN
  -- accounts in id order: the only waits left (a new stripe's insert racing another's) cannot form a cycle
  FOR r IN
    SELECT n.account_id, sum(n.amount) AS amount,
           coalesce(sum(n.amount) FILTER (WHERE n.transaction_kind = 'payout_paid'), 0) AS paid_out, count(*) AS entries
    FROM added n WHERE n.provider_id IS NOT NULL
    GROUP BY 1 ORDER BY 1
  LOOP
    -- the lowest stripe nobody holds (ours included: a row this transaction locked is not skipped)
    SELECT s.stripe INTO held FROM ledger_account_totals s
    WHERE s.account_id = r.account_id ORDER BY s.stripe LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF FOUND THEN
      UPDATE ledger_account_totals
      SET amount = amount + r.amount, paid_out = paid_out + r.paid_out, entries = entries + r.entries,
          updated_at = now()
      WHERE account_id = r.account_id AND stripe = held;
    ELSE
      -- all held (or none yet): one more stripe; two racing here meet on the insert and the second adds to
      -- the first's row once it commits
      SELECT coalesce(max(s.stripe) + 1, 0) INTO held FROM ledger_account_totals s WHERE s.account_id = r.account_id;
      IF held > 255 THEN
        held := pg_backend_pid() % 256;
      END IF;
      INSERT INTO ledger_account_totals AS s (account_id, stripe, amount, paid_out, entries)
      VALUES (r.account_id, held, r.amount, r.paid_out, r.entries)
      ON CONFLICT (account_id, stripe) DO UPDATE
        SET amount = s.amount + excluded.amount, paid_out = s.paid_out + excluded.paid_out,
            entries = s.entries + excluded.entries, updated_at = now();
    END IF;
    -- the day rows of the stripe this posting holds: nobody else writes them until it commits
    INSERT INTO ledger_account_days AS d (account_id, day, stripe, amount, entries)
    SELECT n.account_id, (n.created_at AT TIME ZONE 'UTC')::date, held, sum(n.amount), count(*)
    FROM added n WHERE n.account_id = r.account_id
    GROUP BY 1, 2 ORDER BY 2
    ON CONFLICT (account_id, day, stripe) DO UPDATE
      SET amount = d.amount + excluded.amount, entries = d.entries + excluded.entries, updated_at = now();
  END LOOP;
  RETURN NULL;
END;
$$;
