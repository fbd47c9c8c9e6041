-- booking_of_job --
-- The hold a booking.create job already placed: a retried job continues with it, never places a second.
SELECT id, status, hold_expires_at, amount, currency,
       (SELECT d.amount FROM booking_deposits d WHERE d.booking_id = bookings.id) AS deposit
FROM bookings WHERE created_by_job = %(job_id)s;

-- finish_job_with_payment --
-- A booking job's last step, ONE statement (no BEGIN/COMMIT round trips): the job closed as finish_job closes
-- it, only while we still hold its claim (shared/jobs.py: Finish), and the PaymentIntent created for the
-- booking recorded, waiting for the customer, only if it was (its row comes FROM finished: a lost lease
-- records nothing); a stay's deposit keeps the Stripe Customer its card is saved to, when there is one.
WITH finished AS (
  UPDATE jobs
  SET status = 'succeeded', result = %(result)s, error = NULL, claim_token = NULL, claimed_until = NULL,
      updated_at = now()
  WHERE id = %(id)s AND claim_token = %(token)s
  RETURNING id
), payment AS (
  INSERT INTO payments (booking_id, payment_intent_id, client_secret, amount, currency, status)
  SELECT %(booking_id)s, %(payment_intent_id)s, %(client_secret)s, %(amount)s, %(currency)s, 'requires_payment'
  FROM finished
  ON CONFLICT (payment_intent_id) DO NOTHING
), deposit_customer AS (
  UPDATE booking_deposits SET stripe_customer_id = coalesce(stripe_customer_id, %(customer_id)s)
  WHERE booking_id = %(booking_id)s AND %(customer_id)s::text IS NOT NULL AND EXISTS (SELECT 1 FROM finished)
)
SELECT id FROM finished;

-- lock_booking --
-- A booking's row, locked: every payment change locks its booking first (booking -> payment -> refund),
-- so a cancel and a payment event on one booking run one after the other.
SELECT id, provider_id, status, amount, currency, lower(period) AS start_at, cancellation_policy
FROM bookings WHERE id = %(id)s FOR UPDATE;

-- succeeded_payment --
-- The captured payment of a booking, if any.
SELECT id, payment_intent_id, amount, amount_refunded, currency
FROM payments WHERE booking_id = %(booking_id)s AND status = 'succeeded';

-- open_payments --
-- A booking's payments a customer could still pay.
SELECT payment_intent_id FROM payments WHERE booking_id = %(booking_id)s AND status IN ('requires_payment', 'failed');

-- payment_by_intent --
SELECT id, booking_id, status, amount, currency FROM payments WHERE payment_intent_id = %(payment_intent_id)s;

-- record_payment_succeeded --
-- The intent succeeded. Returns a row only if this changed something (a redelivery returns none).
INSERT INTO payments (booking_id, payment_intent_id, amount, currency, status, charge_id, succeeded_at)
VALUES (%(booking_id)s, %(payment_intent_id)s, %(amount)s, %(currency)s, 'succeeded', %(charge_id)s, now())
ON CONFLICT (payment_intent_id) DO UPDATE
  SET status = 'succeeded', charge_id = EXCLUDED.charge_id, succeeded_at = now(), failure_code = NULL
  WHERE payments.status <> 'succeeded'
RETURNING id;

-- record_payment_failed --
-- An attempt failed: the payment stays open for another attempt until the hold expires. Never undoes a
-- success (an old failure delivered after the success changes nothing).
INSERT INTO payments (booking_id, payment_intent_id, amount, currency, status, failure_code)
VALUES (%(booking_id)s, %(payment_intent_id)s, %(amount)s, %(currency)s, 'failed', %(failure_code)s)
ON CONFLICT (payment_intent_id) DO UPDATE
  SET status = 'failed', failure_code = EXCLUDED.failure_code
  WHERE payments.status IN ('requires_payment', 'failed')
RETURNING id;

-- record_payment_canceled --
UPDATE payments SET status = 'canceled'
WHERE payment_intent_id = %(payment_intent_id)s AND status IN ('requires_payment', 'failed')
RETURNING id;

-- insert_refund --
-- A refund we are about to issue (the refund.issue job calls Stripe). At most one per booking: a second
-- attempt finds the first and inserts nothing.
INSERT INTO refunds (booking_id, payment_id, kind, amount, currency, status, policy)
VALUES (%(booking_id)s, %(payment_id)s, %(kind)s, %(amount)s, %(currency)s, 'pending', %(policy)s)
ON CONFLICT (booking_id) WHERE kind <> 'external' DO NOTHING
RETURNING id;

-- refund_to_issue --
SELECT r.id, r.booking_id, r.amount, r.currency, r.status, r.stripe_refund_id, p.payment_intent_id
FROM refunds r JOIN payments p ON p.id = r.payment_id
WHERE r.id = %(id)s;

-- mark_refund_failed --
UPDATE refunds SET status = 'failed', failure_reason = %(reason)s WHERE id = %(id)s AND status = 'pending';

-- get_booking_payments --
SELECT id, payment_intent_id, amount, currency, status, amount_refunded, failure_code, succeeded_at, created_at
FROM payments WHERE booking_id = %(id)s ORDER BY created_at;

-- get_booking_refunds --
SELECT id, kind, amount, currency, status, stripe_refund_id, policy, failure_reason, created_at
FROM refunds WHERE booking_id = %(id)s ORDER BY created_at;

-- store_stripe_event --
-- The webhook ingress in one statement: store the verified event once (UNIQUE event_id); if it is new and
-- of a type we handle, its apply job goes in with it; a type we do not handle, or an event rendered in another
-- API version than ours, is stored as ignored, with the effect row saying why (%(ignored_reason)s). Returns a row only for a new event.
WITH event AS (
  INSERT INTO stripe_events (event_id, type, object_id, stripe_created, payload, status, job_id, processed_at)
  VALUES (%(event_id)s, %(event_type)s, %(object_id)s, to_timestamp(%(created)s), %(payload)s::jsonb,
          CASE WHEN %(handled)s THEN 'received' ELSE 'ignored' END,
          CASE WHEN %(handled)s THEN %(job_id)s::uuid END,
          CASE WHEN %(handled)s THEN NULL ELSE now() END)
  ON CONFLICT (event_id) DO NOTHING
  RETURNING event_id, job_id
), job AS (
  INSERT INTO jobs (id, type, queue, actor, payload, max_attempts, request_id)
  SELECT job_id, %(type)s, %(queue)s, %(actor)s, jsonb_build_object('event_id', event_id),
         %(max_attempts)s, %(request_id)s
  FROM event WHERE job_id IS NOT NULL
), ignored AS (
  INSERT INTO stripe_event_effects (event_id, effect, detail)
  SELECT event_id, 'ignored', jsonb_build_object('reason', %(ignored_reason)s::text) FROM event
  WHERE job_id IS NULL
)
SELECT event_id, job_id FROM event;

-- lock_stripe_event --
SELECT event_id, type, payload, status FROM stripe_events WHERE event_id = %(event_id)s FOR UPDATE;

-- insert_event_effect --
INSERT INTO stripe_event_effects (event_id, booking_id, effect, detail)
VALUES (%(event_id)s, %(booking_id)s, %(effect)s, %(detail)s);

-- mark_event_applied --
UPDATE stripe_events SET status = 'applied', processed_at = now() WHERE event_id = %(event_id)s;

-- mark_event_ignored --
-- An event we cannot apply (it lacks a field its type must carry): set aside, with an effect row saying why.
UPDATE stripe_events SET status = 'ignored', processed_at = now() WHERE event_id = %(event_id)s;

-- get_stripe_event --
-- One event as support reads it: what arrived, and what applying it changed.
SELECT e.event_id, e.type, e.object_id, e.stripe_created, e.status, e.job_id, e.created_at AS received_at,
       e.processed_at, e.payload,
       coalesce((SELECT jsonb_agg(jsonb_build_object('booking_id', f.booking_id, 'effect', f.effect,
                                                     'detail', f.detail, 'created_at', f.created_at) ORDER BY f.id)
                 FROM stripe_event_effects f WHERE f.event_id = e.event_id), '[]') AS effects
FROM stripe_events e WHERE e.event_id = %(event_id)s;
