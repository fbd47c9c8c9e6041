-- relay_fan_out --
-- The relay's one statement per batch: claim unpublished outbox rows in id order (SKIP LOCKED, so any
-- number of relays share the work), turn each into its deliveries (one per event, channel, recipient;
-- UNIQUE, so a replay adds nothing), write the provider's in-app notification, stage one send job per
-- email/webhook delivery, and mark the events published: all in one transaction. Who gets an email is data:
-- an audience is mailed for an event when a template exists for it (the provider's own or the default).
-- An event without a provider_id (a sign-in link, an invitation) is mail to one user, `payload->>'email'`
-- (audience 'user'): never a webhook, never the feed. An event naming a provider that does not exist
-- reaches nobody.
-- `from_id` is 0 for a batch; a relay isolating an event that fails passes that event's id with limit 1.
WITH batch AS (
  SELECT id, topic, payload, created_at FROM outbox
  WHERE published_at IS NULL AND id >= %(from_id)s
  ORDER BY id LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
), event AS (
  SELECT b.id, b.topic, b.payload, b.created_at, p.id AS provider_id, p.contact_email,
         bk.customer->>'email' AS customer_email,
         CASE WHEN b.payload->>'provider_id' IS NULL THEN b.payload->>'email' END AS user_email
  FROM batch b
  LEFT JOIN providers p ON p.id = (b.payload->>'provider_id')::uuid
  LEFT JOIN bookings bk ON bk.id = (b.payload->>'booking_id')::uuid
  WHERE p.id IS NOT NULL OR b.payload->>'provider_id' IS NULL
), target AS (
  SELECT e.id AS event_id, e.topic, e.provider_id, 'email' AS channel, a.address AS recipient, a.audience,
         NULL::uuid AS endpoint_id
  FROM event e
  CROSS JOIN LATERAL (VALUES ('customer', e.customer_email), ('provider', e.contact_email),
                             ('user', e.user_email)) AS a (audience, address)
  WHERE a.address IS NOT NULL
    AND EXISTS (SELECT 1 FROM notification_templates t
                WHERE t.event = e.topic AND t.audience = a.audience
                  AND (t.provider_id IS NULL OR t.provider_id = e.provider_id))
  UNION ALL
  SELECT e.id, e.topic, e.provider_id, 'webhook', w.id::text, NULL, w.id
  FROM event e
  JOIN webhook_endpoints w ON w.provider_id = e.provider_id AND w.status = 'active' AND w.deleted_at IS NULL
                          AND (w.events = '{}' OR e.topic = ANY (w.events))
), delivery AS (
  INSERT INTO deliveries (event_id, topic, provider_id, channel, recipient, audience, endpoint_id)
  SELECT event_id, topic, provider_id, channel, recipient, audience, endpoint_id FROM target
  ON CONFLICT (event_id, channel, recipient) DO NOTHING
  RETURNING id
), send AS (
  INSERT INTO jobs (id, type, queue, actor, payload, max_attempts)
  SELECT gen_random_uuid(), %(type)s, %(queue)s, %(actor)s, jsonb_build_object('delivery_id', id), %(max_attempts)s
  FROM delivery
  RETURNING id
), feed AS (
  INSERT INTO notifications (provider_id, event_id, topic, booking_id, payload, created_at)
  SELECT provider_id, id, topic, (payload->>'booking_id')::uuid, payload,
         created_at  -- when it happened, so the feed reads in the order of events
  FROM event
  WHERE provider_id IS NOT NULL
  ON CONFLICT (event_id, provider_id) DO NOTHING
), published AS (
  UPDATE outbox SET published_at = now() WHERE id IN (SELECT id FROM batch)
  RETURNING id
)
SELECT (SELECT count(*) FROM published) AS events,
       (SELECT extract(epoch FROM now() - min(created_at)) FROM batch)::float8 AS oldest_seconds,
       (SELECT array_agg(id) FROM send) AS jobs;

-- lock_first_unpublished_event --
-- The oldest unpublished event no other relay holds, locked for this transaction (isolating a failing one).
SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED;

-- set_event_aside --
UPDATE outbox SET published_at = now(), relay_error = %(error)s WHERE id = %(id)s AND published_at IS NULL;

-- delivery_counts --
-- Deliveries not yet delivered, by channel and status, for the scheduler's gauges (every combination, zeros
-- included, so a dashboard always has a series). Recent deliveries only: retention keeps the table bounded.
SELECT c.channel, s.status, count(d.id) AS n
FROM (VALUES ('email'), ('webhook')) AS c (channel)
CROSS JOIN (VALUES ('pending'), ('failed'), ('dead')) AS s (status)
LEFT JOIN deliveries d ON d.channel = c.channel AND d.status = s.status
GROUP BY c.channel, s.status;

-- delivery_to_send --
-- Everything one send needs: the delivery, its event, the booking and provider it is about (none for mail
-- to a user), the endpoint (webhooks) and the template (emails; the provider's own override wins over the
-- default).
SELECT d.id, d.event_id, d.topic, d.channel, d.recipient, d.audience, d.status, d.attempts, d.provider_id,
       o.payload AS event, o.created_at AS event_created_at,
       p.name AS provider_name, p.slug AS provider_slug, p.time_zone,
       bk.id AS booking_id, bk.status AS booking_status, bk.kind AS booking_kind, lower(bk.period) AS start_at,
       upper(bk.period) AS end_at, bk.amount, bk.currency, bk.service_snapshot, bk.customer,
       r.name AS resource_name,
       w.url, w.secret, CASE WHEN w.deleted_at IS NULL THEN w.status ELSE 'deleted' END AS endpoint_status,
       CASE WHEN w.previous_secret_expires_at > now() THEN w.previous_secret END AS previous_secret,
       t.subject, t.text_body, t.html_body
FROM deliveries d
JOIN outbox o ON o.id = d.event_id
LEFT JOIN providers p ON p.id = d.provider_id
LEFT JOIN bookings bk ON bk.id = (o.payload->>'booking_id')::uuid
LEFT JOIN resources r ON r.id = bk.resource_id
LEFT JOIN webhook_endpoints w ON w.id = d.endpoint_id
LEFT JOIN LATERAL (
  SELECT subject, text_body, html_body FROM notification_templates t
  WHERE d.channel = 'email' AND t.event = d.topic AND t.audience = d.audience
    AND (t.provider_id IS NULL OR t.provider_id = d.provider_id)
  ORDER BY t.provider_id NULLS LAST LIMIT 1
) t ON true
WHERE d.id = %(id)s;

-- record_delivery_attempt --
-- One attempt's outcome, and the delivery's new state: delivered; failed with its next attempt due; or dead
-- after the last. A delivered or dead delivery is left alone (a redelivered job changes nothing). The
-- attempt number comes from the row itself, so two racing sends cannot record the same attempt twice.
WITH attempt AS (
  UPDATE deliveries SET
    attempts = attempts + 1,
    status = CASE WHEN %(succeeded)s THEN 'delivered' WHEN %(dead)s THEN 'dead' ELSE 'failed' END,
    delivered_at = CASE WHEN %(succeeded)s THEN now() END,
    next_attempt_at = CASE WHEN %(succeeded)s OR %(dead)s THEN NULL
                           ELSE now() + make_interval(secs => %(retry_in_seconds)s) END,
    last_error = CASE WHEN %(succeeded)s THEN NULL ELSE %(error)s END
  WHERE id = %(id)s AND status IN ('pending', 'failed')
  RETURNING id, attempts, status, next_attempt_at, endpoint_id
), logged AS (
  INSERT INTO delivery_attempts (delivery_id, attempt, succeeded, status_code, duration_ms, error, response_excerpt)
  SELECT id, attempts, %(succeeded)s, %(status_code)s, %(duration_ms)s, %(error)s, %(response_excerpt)s
  FROM attempt
)
SELECT id, attempts, status, next_attempt_at, endpoint_id FROM attempt;

-- lock_webhook_endpoint --
-- Lock order: an endpoint before its deliveries (recover updates them in that order too). NO KEY UPDATE:
-- the relay's inserts of deliveries that reference the endpoint are not blocked.
SELECT id FROM webhook_endpoints WHERE id = %(id)s::uuid FOR NO KEY UPDATE;

-- mark_endpoint_healthy --
UPDATE webhook_endpoints SET failing_since = NULL WHERE id = %(id)s AND failing_since IS NOT NULL;

-- mark_endpoint_failing --
-- An endpoint's failure: it is disabled when it asked to be (410 Gone) or has failed without a success for
-- %(disable_after_seconds)s; the statement says whether this call disabled it (to tell the provider once).
WITH before AS (
  SELECT id, status FROM webhook_endpoints WHERE id = %(id)s FOR NO KEY UPDATE
), changed AS (
  UPDATE webhook_endpoints w SET
    failing_since = coalesce(w.failing_since, now()),
    status = CASE WHEN %(gone)s OR coalesce(w.failing_since, now()) < now() - make_interval(secs => %(disable_after_seconds)s)
                  THEN 'disabled' ELSE w.status END,
    disabled_reason = CASE
      WHEN w.status = 'disabled' THEN w.disabled_reason
      WHEN %(gone)s THEN 'the endpoint answered 410 Gone'
      WHEN coalesce(w.failing_since, now()) < now() - make_interval(secs => %(disable_after_seconds)s)
        THEN 'every delivery failed for ' || round(%(disable_after_seconds)s / 3600.0) || ' hours'
    END
  FROM before WHERE w.id = before.id
  RETURNING w.id, w.provider_id, w.url, w.status, w.disabled_reason, before.status AS status_before
)
SELECT id, provider_id, url, status, disabled_reason, status = 'disabled' AND status_before = 'active' AS disabled_now
FROM changed;

-- insert_outbox_event --
-- An event for the outside world, in the caller's transaction (the relay publishes it).
INSERT INTO outbox (topic, aggregate_id, payload) VALUES (%(topic)s, %(aggregate_id)s, %(payload)s);

-- redrive_due_deliveries --
-- Failed deliveries whose next attempt is due get a send job (unless one is open): the retry schedule and
-- "retry now" both work through this. So does a delivery still pending long after it was made whose job
-- gave up without recording an attempt (JOB_ATTEMPTS_EXHAUSTED on a crash loop): it is never left behind.
INSERT INTO jobs (id, type, queue, actor, payload, max_attempts)
SELECT gen_random_uuid(), %(type)s, %(queue)s, %(actor)s, jsonb_build_object('delivery_id', d.id), %(max_attempts)s
FROM deliveries d
WHERE ((d.status = 'failed' AND d.next_attempt_at <= now())
       OR (d.status = 'pending' AND d.updated_at < now() - make_interval(secs => %(stuck_after_seconds)s)))
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.type = %(type)s AND j.status IN ('queued', 'running')
                                         AND j.payload ? 'delivery_id' AND j.payload->>'delivery_id' = d.id::text)
ORDER BY d.next_attempt_at
LIMIT %(limit)s
RETURNING id;

-- retry_delivery --
-- An owner or SRE asks for another attempt now (a dead delivery gets one more; a delivered one is left).
UPDATE deliveries SET status = 'failed', next_attempt_at = now()
WHERE id = %(id)s AND (%(scope)s::uuid[] IS NULL OR provider_id = ANY (%(scope)s::uuid[]))
  AND status IN ('failed', 'dead')
RETURNING id, status, provider_id;

-- list_deliveries --
SELECT d.id, d.event_id, d.topic, d.channel, d.recipient, d.status, d.attempts, d.next_attempt_at, d.last_error,
       d.delivered_at, d.created_at, d.updated_at,
       coalesce((SELECT jsonb_agg(jsonb_build_object('attempt', a.attempt, 'succeeded', a.succeeded,
                                                     'status_code', a.status_code, 'duration_ms', a.duration_ms,
                                                     'error', a.error, 'response_excerpt', a.response_excerpt,
                                                     'created_at', a.created_at) ORDER BY a.attempt)
                 FROM delivery_attempts a WHERE a.delivery_id = d.id), '[]') AS attempt_log
FROM deliveries d
WHERE d.provider_id = %(provider_id)s
  AND (%(status)s::text IS NULL OR d.status = %(status)s)
  AND (%(after_created_at)s::timestamptz IS NULL OR (d.created_at, d.id) < (%(after_created_at)s, %(after_id)s::uuid))
ORDER BY d.created_at DESC, d.id DESC
LIMIT %(limit)s;

-- list_notifications --
SELECT id, topic, booking_id, payload, read_at, created_at
FROM notifications
WHERE provider_id = %(provider_id)s AND (NOT %(unread)s OR read_at IS NULL)
  AND (%(after_created_at)s::timestamptz IS NULL OR (created_at, id) < (%(after_created_at)s, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- mark_notification_read --
UPDATE notifications SET read_at = coalesce(read_at, now())
WHERE id = %(id)s AND provider_id = %(provider_id)s
RETURNING id, topic, booking_id, payload, read_at, created_at;

-- purge_old_rows --
-- Retention, one batch per table per tick: finished jobs older than %(jobs_days)s days, published outbox rows
-- older than %(events_days)s days (their deliveries, attempts and in-app notifications go with them). Nothing money or audit needs lives
-- in these tables: ledger, payments, refunds, payouts, bookings and their audit are never purged.
WITH old_jobs AS (
  DELETE FROM jobs WHERE id IN (
    SELECT j.id FROM jobs j WHERE j.status IN ('succeeded', 'failed')
      AND j.updated_at < now() - make_interval(secs => %(jobs_days)s * 86400)
      -- a Stripe event keeps its apply job for support (and an unexpired key its job)
      AND NOT EXISTS (SELECT 1 FROM stripe_events e WHERE e.job_id = j.id)
      AND NOT EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.job_id = j.id)
    LIMIT %(limit)s)
  RETURNING id
), old_events AS (
  DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox WHERE published_at < now() - make_interval(secs => %(events_days)s * 86400)
    ORDER BY id LIMIT %(limit)s)
  RETURNING id
)
SELECT (SELECT count(*) FROM old_jobs) AS jobs, (SELECT count(*) FROM old_events) AS events;
