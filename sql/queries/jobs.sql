-- insert_job --
-- Record an accepted job; it is durable before the client hears 202.
INSERT INTO jobs (id, type, queue, actor, payload, max_attempts, request_id)
VALUES (%(id)s, %(type)s, %(queue)s, %(actor)s, %(payload)s, %(max_attempts)s, %(request_id)s);

-- get_job --
-- One job as the status endpoint shows it, to the caller that asked for it (its principal), to the platform
-- (principal NULL), or to members of the provider it concerns (a job asked for by its public token).
SELECT id, type, status, attempts, result, error, created_at, updated_at,
       caller->>'principal' = %(principal)s AS own
FROM jobs WHERE id = %(id)s
  AND (%(principal)s::text IS NULL OR caller->>'principal' = %(principal)s
       OR (caller->>'provider_id')::uuid = ANY (%(member_of)s::uuid[]));

-- claim_job --
-- Take a queued job for this worker with a lease; a running job whose lease ran out may be taken over.
-- The row lock makes two deliveries of one message race on this UPDATE: exactly one wins.
-- Run alone (its own transaction) with an asynchronous commit: losing this commit in a crash is harmless,
-- because the work transaction's synchronous commit flushes the WAL up to and including it.
WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true) AS done)
UPDATE jobs
SET status = 'running', attempts = attempts + 1, claim_token = %(token)s,
    claimed_until = now() + make_interval(secs => %(lease_seconds)s), updated_at = now()
WHERE id = %(id)s
  AND (status = 'queued' OR (status = 'running' AND claimed_until < now()))
  AND EXISTS (SELECT 1 FROM async_commit)
RETURNING id, type, payload, attempts, max_attempts, request_id, caller;

-- finish_job --
-- Close a job we still hold; 0 rows means our lease was taken over and the caller must roll back.
UPDATE jobs
SET status = %(status)s, result = %(result)s, error = %(error)s,
    claim_token = NULL, claimed_until = NULL, updated_at = now()
WHERE id = %(id)s AND claim_token = %(token)s
RETURNING id;

-- release_job --
-- Give a job back to the queue after a transient failure, so a retry can claim it at once.
UPDATE jobs
SET status = 'queued', claim_token = NULL, claimed_until = NULL, enqueued_at = now(), updated_at = now()
WHERE id = %(id)s AND claim_token = %(token)s;

-- requeue_stale_jobs --
-- Jobs queued too long (enqueue lost: Redis down, gateway died) or whose worker lease ran out
-- (worker killed): put them back to queued and hand them to the caller to enqueue again. A queued job's
-- message may only be waiting behind a long queue, so each re-enqueue waits as long as the job had waited
-- before it (doubling, up to 16 x after_seconds): re-sending every job of a backlog on every pass multiplied
-- the backlog (`totem chaos` saw 40,000 duplicate messages ahead of 8 real ones, delivered minutes late).
UPDATE jobs
SET status = 'queued', claim_token = NULL, claimed_until = NULL, enqueued_at = now(), updated_at = now()
WHERE id IN (
  SELECT id FROM jobs WHERE status = 'queued' AND enqueued_at < now() - make_interval(secs => %(after_seconds)s)
    AND now() - enqueued_at >= least(enqueued_at - created_at, make_interval(secs => 16 * %(after_seconds)s))
  UNION ALL
  SELECT id FROM jobs WHERE status = 'running' AND claimed_until < now()
  LIMIT %(limit)s
)
RETURNING id, queue, actor;

-- job_counts --
-- Open jobs per queue and status, for the scheduler's gauges (partial indexes keep this cheap).
SELECT queue, status, count(*) AS n FROM jobs WHERE status IN ('queued', 'running') GROUP BY queue, status;

-- outbox_lag --
-- Age in seconds of the oldest unpublished outbox row (0 when none), and how many wait.
SELECT round(coalesce(extract(epoch FROM now() - min(created_at)), 0), 3) AS lag_seconds, count(*) AS pending
FROM outbox WHERE published_at IS NULL;
