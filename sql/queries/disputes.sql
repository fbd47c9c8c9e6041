-- dispute_booking --
-- The booking a disputed charge paid for (by its PaymentIntent, else by the charge).
SELECT booking_id FROM payments
WHERE payment_intent_id = %(payment_intent_id)s OR charge_id = %(charge_id)s
ORDER BY (payment_intent_id = %(payment_intent_id)s) DESC
LIMIT 1;

-- insert_dispute --
-- A dispute first heard of (by whichever of its events came first); nothing when it is already known.
INSERT INTO disputes (stripe_dispute_id, booking_id, payment_intent_id, charge_id, amount, currency, status, reason,
                      evidence_due_by)
VALUES (%(stripe_dispute_id)s, %(booking_id)s, %(payment_intent_id)s, %(charge_id)s, %(amount)s, %(currency)s,
        %(status)s, %(reason)s, %(evidence_due_by)s)
ON CONFLICT (stripe_dispute_id) DO NOTHING
RETURNING id;

-- lock_dispute --
SELECT d.*, p.dispute_liability
FROM disputes d JOIN bookings b ON b.id = d.booking_id JOIN providers p ON p.id = b.provider_id
WHERE d.stripe_dispute_id = %(stripe_dispute_id)s
FOR UPDATE OF d;

-- advance_dispute_status --
-- A later status (the caller ranks them: open < under review < closed), and the evidence deadline Stripe
-- reports with it.
UPDATE disputes
SET status = %(status)s, evidence_due_by = coalesce(%(evidence_due_by)s, evidence_due_by),
    closed_at = CASE WHEN %(closed)s THEN now() ELSE closed_at END
WHERE id = %(id)s;

-- record_dispute_withdrawal --
UPDATE disputes
SET fee = %(fee)s, provider_share = %(provider_share)s, liability = %(liability)s, funds_withdrawn_at = now()
WHERE id = %(id)s AND funds_withdrawn_at IS NULL
RETURNING id;

-- record_dispute_reinstatement --
UPDATE disputes SET funds_reinstated_at = now()
WHERE id = %(id)s AND funds_withdrawn_at IS NOT NULL AND funds_reinstated_at IS NULL
RETURNING id;

-- booking_unpaid_payable --
-- What a booking still owes its provider and has not sent (pending + available), per account.
SELECT a.kind, coalesce(-sum(e.amount), 0)::bigint AS amount
FROM ledger_transactions t
JOIN ledger_entries e ON e.transaction_id = t.id
JOIN ledger_accounts a ON a.id = e.account_id AND a.kind IN ('provider_pending', 'provider_available')
WHERE t.booking_id = %(booking_id)s
GROUP BY a.kind;

-- get_booking_disputes --
SELECT stripe_dispute_id AS id, amount, currency, status, reason, fee, provider_share, evidence_due_by,
       funds_withdrawn_at, funds_reinstated_at, closed_at, created_at
FROM disputes WHERE booking_id = %(id)s ORDER BY created_at, stripe_dispute_id;
