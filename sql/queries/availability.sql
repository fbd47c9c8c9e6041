-- slot_availability --
-- Free start times of a service on a slot resource between two local dates (inclusive), every
-- %(step_minutes)s minutes inside each opening window, in the provider's time zone (DST-correct:
-- local wall-clock times are converted per day), minus bookings that hold time, blocks and the past.
-- The window's busy time is read once (resource_busy: a multirange), then each candidate is a single
-- in-memory && test.
WITH target AS (
  SELECT r.id AS resource_id, p.time_zone, s.duration_minutes,
         tstzrange(%(from)s::date::timestamp AT TIME ZONE p.time_zone,
                   (%(to)s::date + 1)::timestamp AT TIME ZONE p.time_zone, '[)') AS window
  FROM resources r
  JOIN providers p ON p.id = r.provider_id AND p.deleted_at IS NULL
  JOIN resource_services rs ON rs.resource_id = r.id
  JOIN services s ON s.id = rs.service_id AND s.deleted_at IS NULL
  WHERE r.id = %(resource_id)s AND s.id = %(service_id)s AND r.kind = 'slot' AND r.deleted_at IS NULL
), busy AS MATERIALIZED (  -- once per query, never per candidate
  SELECT resource_busy(t.resource_id, t.window) AS ranges FROM target t
), windows AS (
  SELECT (d::date + h.opens_at) AT TIME ZONE t.time_zone AS opens,
         (d::date + h.closes_at) AT TIME ZONE t.time_zone AS closes, t.duration_minutes
  FROM target t
  CROSS JOIN generate_series(%(from)s::date, %(to)s::date, interval '1 day') d
  JOIN resource_hours h ON h.resource_id = t.resource_id AND h.weekday = extract(isodow FROM d)
), candidates AS (
  SELECT start_at, start_at + make_interval(mins => w.duration_minutes) AS end_at
  FROM windows w,
       generate_series(w.opens, w.closes - make_interval(mins => w.duration_minutes),
                       make_interval(mins => %(step_minutes)s)) AS start_at
)
SELECT c.start_at, c.end_at
FROM candidates c, busy
WHERE c.start_at > now() AND NOT (busy.ranges && tstzrange(c.start_at, c.end_at, '[)'))
ORDER BY c.start_at;

-- insert_resource_block --
-- Block a period of a resource (no new bookings may overlap it).
INSERT INTO resource_blocks (resource_id, period, reason)
VALUES (%(resource_id)s, tstzrange(%(start_at)s, %(end_at)s, '[)'), %(reason)s)
RETURNING id, created_at;

-- get_offer_time_zone --
-- The provider time zone of a live slot resource that offers a live service (none: nothing to show).
SELECT p.time_zone
FROM resources r
JOIN providers p ON p.id = r.provider_id AND p.deleted_at IS NULL
JOIN resource_services rs ON rs.resource_id = r.id
JOIN services s ON s.id = rs.service_id AND s.deleted_at IS NULL
WHERE r.id = %(resource_id)s AND s.id = %(service_id)s AND r.kind = 'slot' AND r.deleted_at IS NULL
  AND (%(scope)s::uuid[] IS NULL OR r.provider_id = ANY (%(scope)s::uuid[]));

-- get_resource_zone --
-- Kind and provider time zone of a live resource.
SELECT r.kind, p.time_zone
FROM resources r JOIN providers p ON p.id = r.provider_id AND p.deleted_at IS NULL
WHERE r.id = %(resource_id)s AND r.deleted_at IS NULL
  AND (%(scope)s::uuid[] IS NULL OR r.provider_id = ANY (%(scope)s::uuid[]));

-- night_availability --
-- Free nights of a stay listing between two local dates (inclusive): not past, not held, not blocked.
WITH listing AS (
  SELECT r.id, p.time_zone,
         tstzrange(%(from)s::date::timestamp AT TIME ZONE p.time_zone,
                   (%(to)s::date + 1)::timestamp AT TIME ZONE p.time_zone, '[)') AS window
  FROM resources r JOIN providers p ON p.id = r.provider_id AND p.deleted_at IS NULL
  WHERE r.id = %(resource_id)s AND r.kind = 'stay' AND r.deleted_at IS NULL
), busy AS MATERIALIZED (  -- once per query, never per candidate
  SELECT resource_busy(l.id, l.window) AS ranges FROM listing l
)
SELECT d::date AS night
FROM listing l, busy, generate_series(%(from)s::date, %(to)s::date, interval '1 day') d
WHERE d::date >= (now() AT TIME ZONE l.time_zone)::date
  AND NOT (busy.ranges && tstzrange(d::date::timestamp AT TIME ZONE l.time_zone,
                                    (d::date + 1)::timestamp AT TIME ZONE l.time_zone, '[)'))
ORDER BY night;
