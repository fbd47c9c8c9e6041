-- ledger_post --
-- Post one journal transaction once (see ledger_post() in migration 0004).
SELECT transaction_id, posted
FROM ledger_post(%(key)s, %(kind)s, %(booking_id)s, %(payout_id)s, %(external_ref)s, %(description)s, %(entries)s);

-- booking_money --
-- What the ledger needs to know about a booking: who is paid, in what currency, at what commission, and
-- what was captured for it.
SELECT b.id, b.provider_id, b.currency, b.commission_bps, b.status,
       (SELECT p.amount FROM payments p WHERE p.booking_id = b.id AND p.status = 'succeeded') AS captured,
       EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.booking_id = b.id AND t.kind = 'maturity') AS matured
FROM bookings b WHERE b.id = %(booking_id)s;

-- booking_pending_payable --
-- What a booking still owes its provider on the pending account (captured share minus refunds so far).
SELECT coalesce(-sum(e.amount), 0)::bigint AS amount
FROM ledger_transactions t
JOIN ledger_entries e ON e.transaction_id = t.id
JOIN ledger_accounts a ON a.id = e.account_id AND a.kind = 'provider_pending'
WHERE t.booking_id = %(booking_id)s;

-- provider_balances --
-- A provider's money per currency: pending (not yet matured), available (matured, payable now), in transit
-- (payouts sent, not confirmed) and paid out (confirmed transfers). The account sums come from the derived
-- totals (kept with the entries, proven equal by ledger_summary_drift); only what depends on the clock is
-- read from entries: credits on the available account that mature later (available_at after their
-- posting) and have not matured yet count as pending, over an index of the maturity window alone.
WITH accounts AS (
  SELECT id, kind, currency FROM ledger_accounts WHERE provider_id = %(provider_id)s
), sums AS (
  SELECT a.currency,
         coalesce(sum(s.amount) FILTER (WHERE a.kind = 'provider_pending'), 0) AS pending,
         coalesce(sum(s.amount) FILTER (WHERE a.kind = 'provider_available'), 0) AS available,
         coalesce(sum(s.amount) FILTER (WHERE a.kind = 'payouts_in_transit'), 0) AS in_transit,
         coalesce(sum(s.paid_out) FILTER (WHERE a.kind = 'payouts_in_transit'), 0) AS paid_out
  FROM accounts a JOIN ledger_account_totals s ON s.account_id = a.id
  GROUP BY a.currency
), maturing AS (
  SELECT a.currency, sum(e.amount) AS amount
  FROM accounts a JOIN ledger_entries e ON e.account_id = a.id
  WHERE a.kind = 'provider_available' AND e.amount < 0 AND e.available_at > e.created_at AND e.available_at > now()
  GROUP BY a.currency
)
SELECT s.currency,
       (-s.pending - coalesce(m.amount, 0))::bigint AS pending,
       (-s.available + coalesce(m.amount, 0))::bigint AS available,
       (-s.in_transit)::bigint AS in_transit,
       s.paid_out::bigint AS paid_out
FROM sums s LEFT JOIN maturing m ON m.currency = s.currency
ORDER BY s.currency;

-- provider_statement --
-- A provider's entries in time order from a position up to an instant, the first %(limit)s of them (the route
-- adds the running balance to statement_opening at the same position). A position is (%(from)s, %(from_id)s):
-- the entries at or after it in (created_at, id) order; a period's start is (its first instant, 0), the page
-- after one ending with entry (t, n) starts at (t, n + 1). One range of the provider's index, in order, each
-- row carrying its transaction's kind, booking, payout and description (copied at insert, migration 0015).
SELECT e.id, e.created_at, e.available_at, -e.amount AS amount, e.currency, a.kind AS account, e.transaction_id,
       e.transaction_kind AS kind, e.booking_id, e.payout_id, e.description
FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id
WHERE e.provider_id = %(provider_id)s AND (e.created_at, e.id) >= (%(from)s::timestamptz, %(from_id)s::bigint)
  AND e.created_at < %(to)s
ORDER BY e.created_at, e.id
LIMIT %(limit)s;

-- statement_opening --
-- What we owed a provider per currency just before a position of its statement (provider_statement): the
-- derived day sums before the position's UTC day, then that day's entries before the position.
SELECT a.currency, (-sum(x.amount))::bigint AS balance
FROM ledger_accounts a,
     LATERAL (SELECT d.amount FROM ledger_account_days d
              WHERE d.account_id = a.id AND d.day < (%(from)s::timestamptz AT TIME ZONE 'UTC')::date
              UNION ALL
              SELECT e.amount FROM ledger_entries e
              WHERE e.account_id = a.id AND (e.created_at, e.id) < (%(from)s::timestamptz, %(from_id)s::bigint)
                AND e.created_at >= date_trunc('day', %(from)s::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') x
WHERE a.provider_id = %(provider_id)s AND a.kind IN ('provider_pending', 'provider_available', 'payouts_in_transit')
GROUP BY a.currency;

-- ledger_summary_drift --
-- Where the derived data differ from what they derive from: per provider account (sum, paid-out part,
-- count) and per account and UTC day (sum, count) the balances of migration 0014; per account, how many
-- entries' copies of their account's provider and their transaction's kind, booking, payout and
-- description (migration 0015) differ from those rows (scope 'entry_copy', the count in entries_count).
-- Always none; run by the tests and by `totem ledger-check`. A pass over every entry: an operator's check,
-- not a request's.
WITH by_account AS (
  SELECT e.account_id, sum(e.amount) AS amount,
         coalesce(sum(e.amount) FILTER (WHERE t.kind = 'payout_paid'), 0) AS paid_out, count(*) AS entries
  FROM ledger_entries e
  JOIN ledger_accounts a ON a.id = e.account_id AND a.provider_id IS NOT NULL
  JOIN ledger_transactions t ON t.id = e.transaction_id
  GROUP BY e.account_id
), copies AS (
  SELECT e.account_id, count(*) AS entries
  FROM ledger_entries e
  JOIN ledger_accounts a ON a.id = e.account_id
  JOIN ledger_transactions t ON t.id = e.transaction_id
  WHERE (e.provider_id, e.transaction_kind, e.booking_id, e.payout_id, e.description)
        IS DISTINCT FROM (a.provider_id, t.kind, t.booking_id, t.payout_id, t.description)
  GROUP BY e.account_id
), totals AS (
  SELECT account_id, sum(amount) AS amount, sum(paid_out) AS paid_out, sum(entries) AS entries
  FROM ledger_account_totals GROUP BY account_id
), by_day AS (
  SELECT e.account_id, (e.created_at AT TIME ZONE 'UTC')::date AS day, sum(e.amount) AS amount, count(*) AS entries
  FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id AND a.provider_id IS NOT NULL
  GROUP BY 1, 2
), days AS (
  SELECT account_id, day, sum(amount) AS amount, sum(entries) AS entries FROM ledger_account_days GROUP BY 1, 2
)
SELECT 'account' AS scope, account_id, NULL::date AS day,
       x.amount::bigint AS entries_amount, y.amount::bigint AS summary_amount,
       x.paid_out::bigint AS entries_paid_out, y.paid_out::bigint AS summary_paid_out,
       x.entries::bigint AS entries_count, y.entries::bigint AS summary_count
FROM by_account x FULL JOIN totals y USING (account_id)
WHERE (x.amount, x.paid_out, x.entries) IS DISTINCT FROM (y.amount, y.paid_out, y.entries)
UNION ALL
SELECT 'day', account_id, day, x.amount::bigint, y.amount::bigint, NULL, NULL, x.entries::bigint, y.entries::bigint
FROM by_day x FULL JOIN days y USING (account_id, day)
WHERE (x.amount, x.entries) IS DISTINCT FROM (y.amount, y.entries)
UNION ALL
SELECT 'entry_copy', account_id, NULL, NULL, NULL, NULL, NULL, entries::bigint, NULL FROM copies
ORDER BY 1, 2, 3;

-- ledger_rebuild_summary --
-- Rebuild the derived balances from the entries (migration 0014); returns how many account totals.
SELECT ledger_rebuild_summary() AS accounts;

-- ledger_trial_balance --
-- Every transaction balances: the transactions that do not (always none).
SELECT t.id, e.currency, sum(e.amount)::bigint AS total
FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
GROUP BY t.id, e.currency HAVING sum(e.amount) <> 0;

-- close_due_periods --
-- Close each payout-enabled provider's most recent ended period (local midnights in its time zone). The
-- exclusion constraint makes this once per period whatever races it: a second closer inserts nothing.
INSERT INTO settlement_periods (provider_id, schedule, period)
SELECT p.id, p.payout_schedule,
       tstzrange((b.period_end - CASE p.payout_schedule WHEN 'weekly' THEN interval '7 days' ELSE interval '1 day' END)
                   AT TIME ZONE p.time_zone,
                 b.period_end AT TIME ZONE p.time_zone, '[)')
FROM providers p,
     LATERAL (SELECT date_trunc(CASE p.payout_schedule WHEN 'weekly' THEN 'week' ELSE 'day' END,
                                %(now)s::timestamptz AT TIME ZONE p.time_zone) AS period_end) b
WHERE (p.payout_account IS NOT NULL OR EXISTS (SELECT 1 FROM stripe_accounts a WHERE a.provider_id = p.id))
  AND p.deleted_at IS NULL
  AND (%(provider_id)s::uuid IS NULL OR p.id = %(provider_id)s::uuid)
ON CONFLICT DO NOTHING
RETURNING id, provider_id, upper(period) AS period_end;

-- payable_due --
-- Per booking of a provider: matured payable not yet paid out (credits count once available_at has
-- passed the cutoff, debits at once). Bookings with a refund pending or a dispute open wait for the next period.
SELECT t.booking_id, a.currency, -sum(e.amount)::bigint AS amount
FROM ledger_accounts a
JOIN ledger_entries e ON e.account_id = a.id
JOIN ledger_transactions t ON t.id = e.transaction_id
WHERE a.provider_id = %(provider_id)s AND a.kind = 'provider_available' AND t.booking_id IS NOT NULL
  AND (e.amount > 0 OR e.available_at <= %(cutoff)s)
  AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.booking_id = t.booking_id AND r.status = 'pending')
  AND NOT EXISTS (SELECT 1 FROM payouts o WHERE o.booking_id = t.booking_id AND o.status <> 'failed')
  -- a disputed booking is paid out once its dispute is closed (a won one returns the provider's share first)
  AND NOT EXISTS (SELECT 1 FROM disputes d WHERE d.booking_id = t.booking_id
                  AND d.status NOT IN ('won', 'lost', 'warning_closed', 'prevented'))
GROUP BY t.booking_id, a.currency
HAVING -sum(e.amount) > 0
ORDER BY t.booking_id;

-- insert_payout_batch --
-- To the provider's connected account (%(destination)s), else the payout account we were given; with
-- %(held_reason)s the batch is recorded and nothing is paid.
INSERT INTO payout_batches (provider_id, period_id, currency, total, destination, held_reason)
SELECT p.id, %(period_id)s, %(currency)s, %(total)s, coalesce(%(destination)s, p.payout_account), %(held_reason)s
FROM providers p WHERE p.id = %(provider_id)s
RETURNING id, destination, held_reason;

-- insert_payout --
-- One payout per booking (payouts_one_per_booking): a racing closer inserts nothing.
INSERT INTO payouts (batch_id, provider_id, booking_id, amount, currency, status)
VALUES (%(batch_id)s, %(provider_id)s, %(booking_id)s, %(amount)s, %(currency)s, 'pending')
ON CONFLICT (booking_id) WHERE status <> 'failed' DO NOTHING
RETURNING id;

-- payout_to_send --
-- With the charge that funded the booking (its succeeded payment's), for the transfer's source_transaction.
SELECT o.id, o.batch_id, o.provider_id, o.booking_id, o.amount, o.currency, o.status, o.stripe_transfer_id,
       b.destination, c.charge_id, c.amount AS charge_amount
FROM payouts o JOIN payout_batches b ON b.id = o.batch_id
LEFT JOIN payments c ON c.booking_id = o.booking_id AND c.status = 'succeeded'
WHERE o.id = %(id)s;

-- mark_payout_paid --
UPDATE payouts SET status = 'paid', stripe_transfer_id = %(transfer_id)s
WHERE id = %(id)s AND status = 'pending'
RETURNING id, provider_id, booking_id, amount, currency;

-- mark_payout_failed --
UPDATE payouts SET status = 'failed', failure_reason = %(reason)s
WHERE id = %(id)s AND status = 'pending'
RETURNING id, provider_id, booking_id, amount, currency;

-- list_payout_batches --
-- A provider's payout batches, newest first, with one line per booking (keyset-paginated).
SELECT b.id, b.provider_id, b.currency, b.total, b.destination, b.held_reason, b.created_at,
       lower(s.period) AS period_start, upper(s.period) AS period_end,
       (SELECT jsonb_agg(jsonb_build_object('payout_id', o.id, 'booking_id', o.booking_id, 'amount', o.amount,
                                            'status', o.status, 'stripe_transfer_id', o.stripe_transfer_id,
                                            'failure_reason', o.failure_reason) ORDER BY o.created_at, o.id)
        FROM payouts o WHERE o.batch_id = b.id) AS lines
FROM payout_batches b JOIN settlement_periods s ON s.id = b.period_id
WHERE b.provider_id = %(provider_id)s
  AND (%(before_created_at)s::timestamptz IS NULL
       OR (b.created_at, b.id) < (%(before_created_at)s::timestamptz, %(before_id)s::uuid))
ORDER BY b.created_at DESC, b.id DESC
LIMIT %(limit)s;

-- ledger_stripe_refs --
-- What our ledger says moved through Stripe, by Stripe's id: captures (cash in), refunds and paid
-- payouts (cash out), for reconciliation against Stripe's balance transactions; a dispute's withdrawal and
-- reinstatement by their balance transaction's id (net of the dispute fee).
SELECT t.external_ref AS reference,
       CASE t.kind WHEN 'capture' THEN 'capture' WHEN 'refund' THEN 'refund' WHEN 'dispute_withdrawal' THEN 'dispute'
                   WHEN 'dispute_reinstatement' THEN 'dispute_reversal' ELSE 'payout' END AS kind,
       sum(e.amount)::bigint AS amount, e.currency
FROM ledger_transactions t
JOIN ledger_entries e ON e.transaction_id = t.id
JOIN ledger_accounts a ON a.id = e.account_id AND a.kind = 'platform_cash'
WHERE t.kind IN ('capture', 'refund', 'payout_paid', 'dispute_withdrawal', 'dispute_reinstatement')
  AND t.external_ref IS NOT NULL
GROUP BY t.external_ref, t.kind, e.currency;

-- insert_reconciliation_run --
INSERT INTO reconciliation_runs (checked, mismatches, finished_at)
VALUES (%(checked)s, %(mismatches)s, now())
RETURNING id;

-- insert_reconciliation --
INSERT INTO reconciliations (run_id, kind, reference, problem, ledger_amount, stripe_amount, currency)
VALUES (%(run_id)s, %(kind)s, %(reference)s, %(problem)s, %(ledger_amount)s, %(stripe_amount)s, %(currency)s);

-- reconcile_due --
-- Whether a scheduled reconciliation is due: none ran in the interval and none is queued or running.
SELECT NOT EXISTS (SELECT 1 FROM reconciliation_runs WHERE started_at > now() - make_interval(secs => %(interval)s))
       AND NOT EXISTS (SELECT 1 FROM jobs WHERE type = %(type)s AND status IN ('queued', 'running'))
       AS due;

-- redrive_stuck_payouts --
-- A payout still pending whose send job gave up (attempts exhausted on transient errors, e.g. Stripe down)
-- gets a fresh job once that job has been quiet for %(after_seconds)s; its Stripe idempotency key makes
-- the resend safe.
INSERT INTO jobs (id, type, queue, actor, payload, max_attempts)
SELECT gen_random_uuid(), %(type)s, %(queue)s, %(actor)s, jsonb_build_object('payout_id', o.id), %(max_attempts)s
FROM payouts o
WHERE o.status = 'pending' AND o.created_at < now() - make_interval(secs => %(after_seconds)s)
  AND NOT EXISTS (SELECT 1 FROM jobs j
                  WHERE j.type = %(type)s AND j.payload ? 'payout_id' AND j.payload->>'payout_id' = o.id::text
                    AND (j.status IN ('queued', 'running')
                         OR j.updated_at > now() - make_interval(secs => %(after_seconds)s)))
LIMIT 100
RETURNING id;
