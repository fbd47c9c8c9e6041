-- check_slot_offer --
-- Gateway-side check that a slot request names a live resource offering a live service.
SELECT 1
FROM resources r
JOIN providers p ON p.id = r.provider_id AND p.deleted_at IS NULL
JOIN resource_services rs ON rs.resource_id = r.id
JOIN services s ON s.id = rs.service_id AND s.deleted_at IS NULL
WHERE r.id = %(resource_id)s AND s.id = %(service_id)s AND r.kind = 'slot' AND r.deleted_at IS NULL
  AND (%(scope)s::uuid[] IS NULL OR r.provider_id = ANY (%(scope)s::uuid[]));

-- insert_slot_booking --
-- Create a slot booking on hold (or, on a request-mode resource, requested: it waits for the owner) with its
-- snapshot, its audit row and its outbox event, in one statement. Overlap with a booking that holds time is
-- refused by bookings_no_overlap (no read-then-insert). Its first step is the resource's: its lock, then its
-- lapsed holds expired, so they never block this one (sweep_resource_for_hold, migration 0016; the offer
-- waits for it, a one-time filter).
WITH swept AS MATERIALIZED (
  SELECT sweep_resource_for_hold(%(resource_id)s, %(max_attempts)s, %(cancel_type)s, %(cancel_queue)s,
                                 %(cancel_actor)s) AS expired
), offer AS (
  SELECT r.id AS resource_id, r.provider_id, p.hold_ttl_seconds, p.commission_bps, r.booking_mode,
         CASE r.booking_mode WHEN 'request' THEN coalesce(p.request_cancellation_policy, p.cancellation_policy)
              ELSE p.cancellation_policy END AS cancellation_policy,
         make_interval(secs => CASE r.booking_mode
           WHEN 'request' THEN coalesce(%(request_ttl_seconds)s::int, r.request_ttl_hours * 3600)
           ELSE coalesce(p.hold_ttl_seconds, %(default_hold_ttl_seconds)s) END) AS waits,
         s.id AS service_id, s.name, s.duration_minutes, s.price, s.currency
  FROM resources r
  JOIN providers p ON p.id = r.provider_id AND p.deleted_at IS NULL
  JOIN resource_services rs ON rs.resource_id = r.id
  JOIN services s ON s.id = rs.service_id AND s.deleted_at IS NULL
  WHERE r.id = %(resource_id)s AND s.id = %(service_id)s AND r.kind = 'slot' AND r.deleted_at IS NULL
    AND EXISTS (SELECT 1 FROM swept)
    -- inside one of the day's opening windows, in the provider's time zone
    AND EXISTS (
      SELECT 1 FROM resource_hours h, LATERAL (SELECT %(start_at)s AT TIME ZONE p.time_zone AS local_start) l
      WHERE h.resource_id = r.id AND h.weekday = extract(isodow FROM l.local_start)
        AND l.local_start::time >= h.opens_at
        AND l.local_start + make_interval(mins => s.duration_minutes) <= l.local_start::date + h.closes_at)
    -- and clear of blocked periods
    AND NOT EXISTS (
      SELECT 1 FROM resource_blocks k
      WHERE k.resource_id = r.id AND k.deleted_at IS NULL
        AND k.period && tstzrange(%(start_at)s, %(start_at)s + make_interval(mins => s.duration_minutes), '[)'))
), booking AS (
  INSERT INTO bookings (id, kind, status, resource_id, provider_id, period, amount, currency,
                        service_snapshot, customer, hold_expires_at, created_by_job, cancellation_policy,
                        commission_bps, customer_token_sha256, created_by_token_id, booking_mode)
  SELECT %(id)s, 'slot', CASE booking_mode WHEN 'request' THEN 'requested' ELSE 'pending_payment' END,
         resource_id, provider_id,
         tstzrange(%(start_at)s, %(start_at)s + make_interval(mins => duration_minutes), '[)'),
         price, currency,
         jsonb_build_object('service_id', service_id, 'name', name, 'duration_minutes', duration_minutes,
                            'price', price, 'currency', currency),
         %(customer)s, now() + waits,
         %(job_id)s, cancellation_policy, commission_bps, %(customer_token_sha256)s,
         %(created_by_token_id)s::uuid, booking_mode
  FROM offer
  RETURNING id, status, provider_id, resource_id, period, amount, currency, hold_expires_at
), audit AS (
  INSERT INTO booking_audit_log (booking_id, actor, actor_id, actor_role, from_status, to_status, reason, job_id)
  SELECT id, %(actor)s, %(actor_id)s, coalesce(%(actor_role)s::text, %(actor_roles)s::jsonb ->> provider_id::text),
         NULL, status, 'booking requested', %(job_id)s FROM booking
), event AS (
  INSERT INTO outbox (topic, aggregate_id, payload)
  SELECT CASE status WHEN 'requested' THEN 'booking_requested' ELSE 'booking_created' END, id,
         jsonb_build_object('booking_id', id, 'provider_id', provider_id, 'resource_id', resource_id,
                            'status', status, 'start_at', lower(period), 'end_at', upper(period),
                            'amount', amount, 'currency', currency, 'link', '/booking/' || id)
         || CASE WHEN status = 'requested' THEN jsonb_build_object(
              'respond_by', hold_expires_at, 'approve_link', '/console/bookings/' || id || '/approve',
              'decline_link', '/console/bookings/' || id || '/decline') ELSE '{}' END
  FROM booking
)
SELECT id, status, hold_expires_at, amount, currency, NULL::bigint AS deposit FROM booking;

-- check_stay_listing --
-- Gateway-side check that a stay request names a live listing.
SELECT 1
FROM resources r JOIN providers p ON p.id = r.provider_id AND p.deleted_at IS NULL
WHERE r.id = %(resource_id)s AND r.kind = 'stay' AND r.deleted_at IS NULL
  AND (%(scope)s::uuid[] IS NULL OR r.provider_id = ANY (%(scope)s::uuid[]));

-- insert_stay_booking --
-- Hold a listing's nights: [check_in, check_out) local midnights in the provider's time zone, so a
-- check-out day is free for the next check-in. Price = nights x nightly price, snapshotted. First the
-- resource's lock and sweep, as insert_slot_booking's.
WITH swept AS MATERIALIZED (
  SELECT sweep_resource_for_hold(%(resource_id)s, %(max_attempts)s, %(cancel_type)s, %(cancel_queue)s,
                                 %(cancel_actor)s) AS expired
), listing AS (
  SELECT r.id AS resource_id, r.provider_id, r.name, r.nightly_price, p.currency, p.commission_bps,
         r.booking_mode, r.security_deposit,
         CASE r.booking_mode WHEN 'request' THEN coalesce(p.request_cancellation_policy, p.cancellation_policy)
              ELSE p.cancellation_policy END AS cancellation_policy,
         make_interval(secs => CASE r.booking_mode
           WHEN 'request' THEN coalesce(%(request_ttl_seconds)s::int, r.request_ttl_hours * 3600)
           ELSE coalesce(p.hold_ttl_seconds, %(default_hold_ttl_seconds)s) END) AS waits,
         tstzrange(%(check_in)s::date::timestamp AT TIME ZONE p.time_zone,
                   %(check_out)s::date::timestamp AT TIME ZONE p.time_zone, '[)') AS period
  FROM resources r
  JOIN providers p ON p.id = r.provider_id AND p.deleted_at IS NULL
  WHERE r.id = %(resource_id)s AND r.kind = 'stay' AND r.deleted_at IS NULL
    AND %(check_in)s::date >= (now() AT TIME ZONE p.time_zone)::date
    AND EXISTS (SELECT 1 FROM swept)
), clear AS (
  SELECT * FROM listing l
  WHERE NOT EXISTS (SELECT 1 FROM resource_blocks k
                    WHERE k.resource_id = l.resource_id AND k.deleted_at IS NULL AND k.period && l.period)
), booking AS (
  INSERT INTO bookings (id, kind, status, resource_id, provider_id, period, amount, currency,
                        service_snapshot, customer, hold_expires_at, created_by_job, cancellation_policy,
                        commission_bps, customer_token_sha256, created_by_token_id, booking_mode)
  SELECT %(id)s, 'stay', CASE booking_mode WHEN 'request' THEN 'requested' ELSE 'pending_payment' END,
         resource_id, provider_id, period,
         nightly_price * (%(check_out)s::date - %(check_in)s::date), currency,
         jsonb_build_object('listing_name', name, 'nightly_price', nightly_price, 'currency', currency,
                            'check_in', %(check_in)s::date, 'check_out', %(check_out)s::date,
                            'nights', %(check_out)s::date - %(check_in)s::date, 'guests', %(guests)s::int,
                            'security_deposit', security_deposit),
         %(customer)s, now() + waits,
         %(job_id)s, cancellation_policy, commission_bps, %(customer_token_sha256)s,
         %(created_by_token_id)s::uuid, booking_mode
  FROM clear
  RETURNING id, status, provider_id, resource_id, period, amount, currency, hold_expires_at
), deposit AS (  -- the listing's security deposit, held later (shortly before arrival)
  INSERT INTO booking_deposits (booking_id, provider_id, amount, currency)
  SELECT b.id, b.provider_id, c.security_deposit, b.currency FROM booking b, clear c
  WHERE c.security_deposit IS NOT NULL
  RETURNING amount
), audit AS (
  INSERT INTO booking_audit_log (booking_id, actor, actor_id, actor_role, from_status, to_status, reason, job_id)
  SELECT id, %(actor)s, %(actor_id)s, coalesce(%(actor_role)s::text, %(actor_roles)s::jsonb ->> provider_id::text),
         NULL, status, 'stay requested', %(job_id)s FROM booking
), event AS (
  INSERT INTO outbox (topic, aggregate_id, payload)
  SELECT CASE status WHEN 'requested' THEN 'booking_requested' ELSE 'booking_created' END, id,
         jsonb_build_object('booking_id', id, 'provider_id', provider_id, 'resource_id', resource_id,
                            'status', status, 'start_at', lower(period), 'end_at', upper(period),
                            'amount', amount, 'currency', currency, 'link', '/booking/' || id)
         || CASE WHEN status = 'requested' THEN jsonb_build_object(
              'respond_by', hold_expires_at, 'approve_link', '/console/bookings/' || id || '/approve',
              'decline_link', '/console/bookings/' || id || '/decline') ELSE '{}' END
  FROM booking
)
SELECT id, status, hold_expires_at, amount, currency, (SELECT amount FROM deposit) AS deposit FROM booking;

-- explain_refused_stay --
-- Why insert_stay_booking created nothing: no such live listing, or the nights are past or blocked.
SELECT EXISTS (
  SELECT 1 FROM resources r JOIN providers p ON p.id = r.provider_id AND p.deleted_at IS NULL
  WHERE r.id = %(resource_id)s AND r.kind = 'stay' AND r.deleted_at IS NULL
) AS offered;

-- explain_refused_slot --
-- Why insert_slot_booking created nothing: not offered (or deleted), or outside hours / blocked.
SELECT EXISTS (
  SELECT 1 FROM resources r
  JOIN providers p ON p.id = r.provider_id AND p.deleted_at IS NULL
  JOIN resource_services rs ON rs.resource_id = r.id
  JOIN services s ON s.id = rs.service_id AND s.deleted_at IS NULL
  WHERE r.id = %(resource_id)s AND s.id = %(service_id)s AND r.kind = 'slot' AND r.deleted_at IS NULL
) AS offered;

-- transition_booking --
-- Move a booking to another status with its audit row and outbox event, in one statement. The row is
-- locked first so from_status is the status actually left; bookings_valid_transition refuses illegal moves.
-- An approved request (requested -> pending_payment) gets its payment hold from now.
WITH current AS (
  SELECT b.id, b.status, p.hold_ttl_seconds FROM bookings b JOIN providers p ON p.id = b.provider_id
  WHERE b.id = %(id)s FOR UPDATE OF b
), changed AS (
  UPDATE bookings b SET status = %(to_status)s,
         hold_expires_at = CASE WHEN %(to_status)s = 'pending_payment' AND c.status = 'requested'
           THEN now() + make_interval(secs => coalesce(c.hold_ttl_seconds, %(default_hold_ttl_seconds)s::int, 900))
           ELSE b.hold_expires_at END
  FROM current c WHERE b.id = c.id
  RETURNING b.id, c.status AS from_status, b.status AS to_status, b.provider_id, b.hold_expires_at
), audit AS (
  INSERT INTO booking_audit_log (booking_id, actor, actor_id, actor_role, from_status, to_status, reason, job_id,
                                 detail)
  SELECT id, %(actor)s, %(actor_id)s, %(actor_role)s, from_status, to_status, %(reason)s, %(job_id)s, %(detail)s
  FROM changed
), event AS (
  INSERT INTO outbox (topic, aggregate_id, payload)
  SELECT 'booking_' || to_status, id,
         jsonb_build_object('booking_id', id, 'provider_id', provider_id, 'from_status', from_status,
                            'status', to_status, 'reason', %(reason)s, 'detail', %(detail)s,
                            'link', '/booking/' || id)
  FROM changed
)
SELECT id, from_status, to_status, hold_expires_at FROM changed;

-- check_transition_allowed --
-- Gateway-side pre-check for a lifecycle command: the booking exists and may move to to_status now.
SELECT 1 FROM bookings b
JOIN booking_transitions t ON t.from_status = b.status AND t.to_status = %(to_status)s AND b.kind = ANY (t.kinds)
WHERE b.id = %(booking_id)s
  AND (%(to_status)s <> 'checked_in' OR now() >= lower(b.period))
  AND (b.status <> 'requested' OR b.hold_expires_at > now())
  AND (%(scope)s::uuid[] IS NULL OR b.provider_id = ANY (%(scope)s::uuid[]))
  AND (%(only_booking)s::uuid IS NULL OR b.id = %(only_booking)s::uuid)
  AND (%(created_by_token)s::uuid IS NULL OR b.created_by_token_id = %(created_by_token)s::uuid);

-- get_booking_status --
-- The current status of a booking the caller may see (to explain a refused command).
SELECT status, provider_id, kind, lower(period) AS start_at, hold_expires_at, now() AS now FROM bookings WHERE id = %(booking_id)s
  AND (%(scope)s::uuid[] IS NULL OR provider_id = ANY (%(scope)s::uuid[]))
  AND (%(only_booking)s::uuid IS NULL OR id = %(only_booking)s::uuid)
  AND (%(created_by_token)s::uuid IS NULL OR created_by_token_id = %(created_by_token)s::uuid);

-- list_bookings --
-- Bookings by provider / resource / status / time window, oldest first, keyset-paginated on (created_at, id).
SELECT id, kind, status, resource_id, provider_id, lower(period) AS start_at, upper(period) AS end_at,
       amount, currency, service_snapshot, customer, hold_expires_at, created_at, updated_at, booking_mode
FROM bookings
WHERE (%(provider_id)s::uuid IS NULL OR provider_id = %(provider_id)s::uuid)
  AND (%(resource_id)s::uuid IS NULL OR resource_id = %(resource_id)s::uuid)
  AND (%(scope)s::uuid[] IS NULL OR provider_id = ANY (%(scope)s::uuid[]))
  AND (%(only_booking)s::uuid IS NULL OR id = %(only_booking)s::uuid)
  AND (%(created_by_token)s::uuid IS NULL OR created_by_token_id = %(created_by_token)s::uuid)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(from)s::timestamptz IS NULL OR upper(period) > %(from)s::timestamptz)
  AND (%(to)s::timestamptz IS NULL OR lower(period) < %(to)s::timestamptz)
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (created_at, id) > (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY created_at, id
LIMIT %(limit)s;

-- get_booking --
-- A booking as clients read it, if the caller may see it (its providers; a customer: that booking; a public
-- token: the bookings it created).
SELECT id, kind, status, resource_id, provider_id, lower(period) AS start_at, upper(period) AS end_at,
       amount, currency, service_snapshot, customer, hold_expires_at, cancellation_policy, created_at, updated_at,
       booking_mode
FROM bookings WHERE id = %(id)s
  AND (%(scope)s::uuid[] IS NULL OR provider_id = ANY (%(scope)s::uuid[]))
  AND (%(only_booking)s::uuid IS NULL OR id = %(only_booking)s::uuid)
  AND (%(created_by_token)s::uuid IS NULL OR created_by_token_id = %(created_by_token)s::uuid);

-- get_booking_audit --
-- The audit trail of one booking, oldest first.
SELECT actor, actor_id, actor_role, from_status, to_status, reason, job_id, created_at, detail
FROM booking_audit_log WHERE booking_id = %(id)s ORDER BY id;

-- expire_overdue_holds --
-- Holds past hold_expires_at expired, with audit, outbox and a cancel-intent job for each open PaymentIntent:
-- all of them (the scheduler: %(resource_id)s NULL) or one resource's. The sweep is the function of the same
-- name (migration 0016), so a hold can run it as the first step of its one statement.
SELECT expired, cancel_jobs
FROM expire_overdue_holds(%(resource_id)s, %(limit)s, %(actor)s, %(max_attempts)s, %(cancel_type)s,
                          %(cancel_queue)s, %(cancel_actor)s);
