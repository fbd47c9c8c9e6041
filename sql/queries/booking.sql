-- check_slot_offer --
-- Gateway-side check that a slot request names a live resource offering a live service.
SELECT 1
FROM resources r
JOIN providers p ON p.id = r.provider_id AND p.deleted_at IS NULL
JOIN resource_services rs ON rs.resource_id = r.id
JOIN services s ON s.id = rs.service_id AND s.deleted_at IS NULL
WHERE r.id = %(resource_id)s AND s.id = %(service_id)s AND r.kind = 'slot' AND r.deleted_at IS NULL;

-- insert_slot_booking --
-- Create a slot booking on hold with its snapshot, its audit row and its outbox event, in one statement.
-- Overlap with a booking that holds time is refused by bookings_no_overlap (no read-then-insert).
WITH offer AS (
  SELECT r.id AS resource_id, r.provider_id, p.hold_ttl_seconds,
         s.id AS service_id, s.name, s.duration_minutes, s.price, s.currency
  FROM resources r
  JOIN providers p ON p.id = r.provider_id AND p.deleted_at IS NULL
  JOIN resource_services rs ON rs.resource_id = r.id
  JOIN services s ON s.id = rs.service_id AND s.deleted_at IS NULL
  WHERE r.id = %(resource_id)s AND s.id = %(service_id)s AND r.kind = 'slot' AND r.deleted_at IS NULL
), booking AS (
  INSERT INTO bookings (id, kind, status, resource_id, provider_id, period, amount, currency,
                        service_snapshot, customer, hold_expires_at, created_by_job)
  SELECT %(id)s, 'slot', 'pending_payment', resource_id, provider_id,
         tstzrange(%(start_at)s, %(start_at)s + make_interval(mins => duration_minutes), '[)'),
         price, currency,
         jsonb_build_object('service_id', service_id, 'name', name, 'duration_minutes', duration_minutes,
                            'price', price, 'currency', currency),
         %(customer)s,
         now() + make_interval(secs => coalesce(hold_ttl_seconds, %(default_hold_ttl_seconds)s)),
         %(job_id)s
  FROM offer
  RETURNING id, status, provider_id, resource_id, period, amount, currency, hold_expires_at
), audit AS (
  INSERT INTO booking_audit_log (booking_id, actor, from_status, to_status, reason, job_id)
  SELECT id, %(actor)s, NULL, status, 'booking requested', %(job_id)s FROM booking
), event AS (
  INSERT INTO outbox (topic, aggregate_id, payload)
  SELECT 'booking_created', id,
         jsonb_build_object('booking_id', id, 'provider_id', provider_id, 'resource_id', resource_id,
                            'status', status, 'start_at', lower(period), 'end_at', upper(period),
                            'amount', amount, 'currency', currency, 'link', '/booking/' || id)
  FROM booking
)
SELECT id, status, hold_expires_at FROM booking;

-- get_booking --
-- A booking as clients read it.
SELECT id, kind, status, resource_id, provider_id, lower(period) AS start_at, upper(period) AS end_at,
       amount, currency, service_snapshot, customer, hold_expires_at, created_at, updated_at
FROM bookings WHERE id = %(id)s;

-- get_booking_audit --
-- The audit trail of one booking, oldest first.
SELECT actor, from_status, to_status, reason, job_id, created_at
FROM booking_audit_log WHERE booking_id = %(id)s ORDER BY id;

-- expire_overdue_holds --
-- Holds past hold_expires_at become expired (freeing the time at once), with audit and outbox rows.
-- SKIP LOCKED: a hold being paid right now is left to whichever transaction commits first.
WITH expired AS (
  UPDATE bookings SET status = 'expired'
  WHERE id IN (
    SELECT id FROM bookings
    WHERE status = 'pending_payment' AND hold_expires_at <= now()
    ORDER BY hold_expires_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
  )
  RETURNING id, provider_id
), audit AS (
  INSERT INTO booking_audit_log (booking_id, actor, from_status, to_status, reason)
  SELECT id, 'scheduler', 'pending_payment', 'expired', 'payment hold expired' FROM expired
), event AS (
  INSERT INTO outbox (topic, aggregate_id, payload)
  SELECT 'booking_expired', id,
         jsonb_build_object('booking_id', id, 'provider_id', provider_id, 'status', 'expired',
                            'link', '/booking/' || id)
  FROM expired
)
SELECT count(*) AS expired FROM expired;
