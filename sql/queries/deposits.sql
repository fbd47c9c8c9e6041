-- lock_deposit --
-- A booking's deposit with what deciding about it needs, booking row locked first, then the deposit (the
-- payments lock order: booking -> payment -> deposit).
SELECT d.*, b.status AS booking_status, b.kind, lower(b.period) AS start_at, b.customer ->> 'email' AS email
FROM bookings b JOIN booking_deposits d ON d.booking_id = b.id
WHERE b.id = %(booking_id)s
FOR UPDATE OF b, d;

-- save_deposit_card --
-- The card that paid the booking, saved to its Stripe Customer: the deposit is later held on it.
UPDATE booking_deposits SET payment_method_id = coalesce(payment_method_id, %(payment_method_id)s)
WHERE booking_id = %(booking_id)s AND status = 'pending'
RETURNING booking_id;

-- stage_due_deposit_authorizations --
-- Deposits whose stay begins within DEPOSIT_AUTHORIZE_BEFORE_HOURS (card authorisations last about 7 days,
-- so not earlier), paid for with a saved card: one deposit.authorize job each, staged once (authorize_job).
-- All of them (the scheduler) or one booking's (the moment it is paid). The caller enqueues the job ids.
WITH due AS (
  SELECT d.booking_id FROM booking_deposits d JOIN bookings b ON b.id = d.booking_id
  WHERE d.status = 'pending' AND d.authorize_job IS NULL AND d.payment_method_id IS NOT NULL
    AND b.status IN ('paid', 'checked_in')
    AND lower(b.period) - make_interval(secs => %(before_seconds)s) <= now()
    AND (%(booking_id)s::uuid IS NULL OR d.booking_id = %(booking_id)s::uuid)
  ORDER BY d.created_at LIMIT %(limit)s
  FOR UPDATE OF d SKIP LOCKED
), staged AS (
  INSERT INTO jobs (id, type, queue, actor, payload, max_attempts)
  SELECT gen_random_uuid(), %(type)s, %(queue)s, %(actor)s,
         jsonb_build_object('booking_id', booking_id, 'actor', %(by)s::text), %(max_attempts)s
  FROM due
  RETURNING id, (payload ->> 'booking_id')::uuid AS booking_id
)
UPDATE booking_deposits d SET authorize_job = s.id FROM staged s WHERE d.booking_id = s.booking_id
RETURNING s.id;

-- record_deposit_authorized --
-- The card is authorised for the deposit (said by Stripe's answer or by its amount_capturable_updated event,
-- whichever comes first; the second changes nothing). A hold that lapsed is cancelled at Stripe for good: a
-- late copy of that intent's amount_capturable_updated (events arrive in any order) does not revive it.
UPDATE booking_deposits SET status = 'authorized', payment_intent_id = %(payment_intent_id)s, authorized_at = now(),
                            failure_code = NULL, failure_message = NULL
WHERE booking_id = %(booking_id)s
  AND (status = 'pending'
       OR (status = 'failed' AND NOT (failure_code = 'authorization_expired'
                                      AND payment_intent_id IS NOT DISTINCT FROM %(payment_intent_id)s)))
RETURNING booking_id, provider_id, amount, currency, status;

-- record_deposit_failed --
-- The authorisation was declined (from pending), or lapsed at Stripe before anyone settled it (from
-- authorized: Stripe cancels an uncaptured PaymentIntent after about 7 days).
UPDATE booking_deposits SET status = 'failed', failure_code = %(failure_code)s, failure_message = %(failure_message)s,
                            payment_intent_id = coalesce(%(payment_intent_id)s, payment_intent_id),
                            settle_job = NULL, settle_action = NULL
WHERE booking_id = %(booking_id)s AND status = ANY (%(from_statuses)s::text[])
RETURNING booking_id, provider_id, amount, currency, status;

-- record_deposit_claimed --
-- Captured: claimed is final (booking_deposits_check_transition), so a claim is posted and paid out once.
UPDATE booking_deposits SET status = 'claimed', claimed_amount = %(amount)s, settle_job = NULL, settle_action = NULL,
                            claim_reason = coalesce(claim_reason, %(reason)s)
WHERE booking_id = %(booking_id)s AND status = 'authorized'
RETURNING booking_id, provider_id, claimed_amount AS amount, currency, status, claim_reason;

-- record_deposit_released --
-- Nothing will be taken: the authorisation is cancelled (from authorized) or was never placed.
UPDATE booking_deposits SET status = 'released', settle_job = NULL, settle_action = NULL
WHERE booking_id = %(booking_id)s AND status = ANY (%(from_statuses)s::text[])
RETURNING booking_id, provider_id, amount, currency, status;

-- take_deposit_for_settling --
-- A claim or release job takes the held deposit before it calls Stripe; another settling job is refused
-- until it finishes (or fails for good). A retried job finds it holds it already and goes on.
UPDATE booking_deposits d SET settle_job = %(job_id)s, settle_action = %(action)s,
                              claim_amount = coalesce(%(claim_amount)s, d.claim_amount),
                              claim_reason = coalesce(%(claim_reason)s, d.claim_reason)
WHERE d.booking_id = %(booking_id)s AND d.status = 'authorized'
  AND (d.settle_job IS NULL OR d.settle_job = %(job_id)s
       OR EXISTS (SELECT 1 FROM jobs j WHERE j.id = d.settle_job AND j.status = 'failed'))
RETURNING d.booking_id, d.settle_action, d.claim_amount, d.claim_reason, d.payment_intent_id;

-- open_claim_window --
-- At check-out a held deposit may be claimed until the window closes.
UPDATE booking_deposits SET claim_deadline = now() + make_interval(secs => %(window_seconds)s)
WHERE booking_id = %(booking_id)s AND status = 'authorized' AND claim_deadline IS NULL
RETURNING claim_deadline;

-- stage_lapsed_deposit_releases --
-- Claim windows that closed with the deposit still held: a deposit.release job each (by the scheduler),
-- marked as the deposit's settling job in the same statement, so it is staged once.
WITH due AS (
  SELECT d.booking_id FROM booking_deposits d
  WHERE d.status = 'authorized' AND d.claim_deadline <= now()
    AND (d.settle_job IS NULL OR EXISTS (SELECT 1 FROM jobs j WHERE j.id = d.settle_job AND j.status = 'failed'))
  ORDER BY d.claim_deadline LIMIT %(limit)s
  FOR UPDATE OF d SKIP LOCKED
), staged AS (
  INSERT INTO jobs (id, type, queue, actor, payload, max_attempts)
  SELECT gen_random_uuid(), %(type)s, %(queue)s, %(actor)s,
         jsonb_build_object('booking_id', booking_id, 'actor', 'scheduler', 'reason', 'claim window passed'),
         %(max_attempts)s
  FROM due
  RETURNING id, (payload ->> 'booking_id')::uuid AS booking_id
)
UPDATE booking_deposits d SET settle_job = s.id, settle_action = 'release' FROM staged s
WHERE d.booking_id = s.booking_id
RETURNING s.id;

-- deposit_of_intent --
-- Which booking a deposit PaymentIntent belongs to (its metadata says so too; this is the record).
SELECT booking_id FROM booking_deposits WHERE payment_intent_id = %(payment_intent_id)s;

-- get_booking_deposit --
-- A booking's deposit as clients read it.
SELECT amount, currency, status, claimed_amount, claim_reason, payment_intent_id, authorized_at, claim_deadline,
       failure_code
FROM booking_deposits WHERE booking_id = %(id)s;

-- check_deposit_settleable --
-- Gateway-side pre-check of a claim or release: the caller's booking is checked out and its deposit held.
SELECT 1 FROM bookings b JOIN booking_deposits d ON d.booking_id = b.id
WHERE b.id = %(booking_id)s AND b.status = 'checked_out' AND d.status = 'authorized'
  AND (%(amount)s::bigint IS NULL OR %(amount)s::bigint <= d.amount)
  AND (%(scope)s::uuid[] IS NULL OR b.provider_id = ANY (%(scope)s::uuid[]))
  AND (%(only_booking)s::uuid IS NULL OR b.id = %(only_booking)s::uuid)
  AND (%(created_by_token)s::uuid IS NULL OR b.created_by_token_id = %(created_by_token)s::uuid);

-- release_unheld_deposit --
-- A declined request never held a deposit: it is released with the booking.
UPDATE booking_deposits SET status = 'released' WHERE booking_id = %(booking_id)s AND status = 'pending';

-- approval_of_job --
-- The booking an approve job approved (its audit row names the job), as a hold to pay, with the customer's
-- email (for the Stripe Customer a deposit needs).
SELECT b.id, b.status, b.hold_expires_at, b.amount, b.currency, b.customer ->> 'email' AS email,
       (SELECT d.amount FROM booking_deposits d WHERE d.booking_id = b.id) AS deposit
FROM bookings b
WHERE b.id = %(booking_id)s AND EXISTS (
  SELECT 1 FROM booking_audit_log a
  WHERE a.booking_id = b.id AND a.job_id = %(job_id)s AND a.to_status = 'pending_payment');
