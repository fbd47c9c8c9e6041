-- refund_payment --
-- The payment a Stripe refund takes money back from (by its PaymentIntent).
SELECT id, booking_id, status, amount, currency FROM payments WHERE payment_intent_id = %(payment_intent_id)s;

-- lock_refund --
-- A refund row, by our id (a refund we issue names it in its metadata) or by Stripe's id, locked (after its
-- booking: booking -> payment -> refund).
SELECT id, booking_id, payment_id, kind, amount, currency, status, stripe_refund_id, failure_reason
FROM refunds
WHERE (id = %(refund_id)s::uuid OR stripe_refund_id = %(stripe_refund_id)s) AND payment_id = %(payment_id)s
ORDER BY (id = %(refund_id)s::uuid) IS TRUE DESC
LIMIT 1
FOR UPDATE;

-- insert_external_refund --
-- A refund Stripe made that we did not issue (the Dashboard, another integration): recorded as external.
INSERT INTO refunds (booking_id, payment_id, kind, amount, currency, status, stripe_refund_id, failure_reason)
VALUES (%(booking_id)s, %(payment_id)s, 'external', %(amount)s, %(currency)s, %(status)s, %(stripe_refund_id)s,
        %(failure_reason)s)
ON CONFLICT (stripe_refund_id) DO NOTHING
RETURNING id, booking_id, payment_id, kind, amount, currency, status, stripe_refund_id, failure_reason;

-- advance_refund --
-- What Stripe says of a refund, applied only forward (pending -> succeeded -> failed; a stale snapshot
-- delivered late changes nothing): names Stripe's id once, and keeps why it failed.
UPDATE refunds
SET status = %(status)s, stripe_refund_id = coalesce(stripe_refund_id, %(stripe_refund_id)s),
    failure_reason = CASE WHEN %(status)s = 'failed' THEN %(failure_reason)s ELSE failure_reason END
WHERE id = %(id)s
  AND (stripe_refund_id IS NULL
       OR array_position(ARRAY['pending', 'succeeded', 'failed'], %(status)s)
          > array_position(ARRAY['pending', 'succeeded', 'failed'], status))
  AND status <> 'failed'
RETURNING id, booking_id, payment_id, kind, amount, currency, status, stripe_refund_id, failure_reason;

-- stripe_refunds_of_payment --
-- A payment's refunds that Stripe created (each posts to the ledger once its payment is captured).
SELECT id, booking_id, payment_id, kind, amount, currency, status, stripe_refund_id, failure_reason
FROM refunds WHERE payment_id = %(payment_id)s AND stripe_refund_id IS NOT NULL ORDER BY created_at
FOR UPDATE;

-- ledger_transaction_entries --
-- The entries of the transaction posted under a key (none: not posted).
SELECT a.kind, a.provider_id, e.currency, e.amount
FROM ledger_transactions t
JOIN ledger_entries e ON e.transaction_id = t.id
JOIN ledger_accounts a ON a.id = e.account_id
WHERE t.idempotency_key = %(key)s
ORDER BY e.id;

-- record_charge_refunded --
-- A charge.refunded event: Stripe's running total on the charge, kept as the highest reported.
UPDATE payments SET stripe_amount_refunded = greatest(stripe_amount_refunded, %(amount_refunded)s),
                    charge_id = coalesce(charge_id, %(charge_id)s)
WHERE payment_intent_id = %(payment_intent_id)s AND stripe_amount_refunded < %(amount_refunded)s
RETURNING id;

-- refresh_amount_refunded --
-- What the charge has refunded now: the refunds Stripe created and did not fail, or (when a charge.refunded
-- event came before its refunds' events) the charge's reported total less the refunds known to have failed
-- since, whichever is more; exact once every refund's events have arrived.
WITH sums AS (
  SELECT coalesce(sum(amount) FILTER (WHERE status <> 'failed'), 0) AS live,
         coalesce(sum(amount) FILTER (WHERE status = 'failed'), 0) AS failed
  FROM refunds WHERE payment_id = %(payment_id)s AND stripe_refund_id IS NOT NULL
)
UPDATE payments p
SET amount_refunded = least(p.amount, greatest(s.live, p.stripe_amount_refunded - s.failed))
FROM sums s
WHERE p.id = %(payment_id)s
  AND p.amount_refunded <> least(p.amount, greatest(s.live, p.stripe_amount_refunded - s.failed))
RETURNING p.amount_refunded;
