-- accept_command --
-- Accept a command in ONE statement (its own transaction): try the key's advisory lock (false: another
-- request with this key is in flight), run the command's check ({check}, an EXISTS subquery), store the
-- key with its fingerprint and 202 response, and insert the job only from the key row actually written.
-- ON CONFLICT on the key's primary key is what makes a key usable once: an unexpired key is left alone
-- (and no job is inserted); an expired one is replaced.
WITH lock AS (
  SELECT pg_try_advisory_xact_lock(hashtextextended(%(key_scope)s || E'\n' || %(key)s, 7)) AS locked
), checked AS (
  SELECT 1 AS ok FROM lock WHERE locked AND EXISTS ({check})
), stored_key AS (
  INSERT INTO idempotency_keys
    (scope, key, fingerprint, method, path, job_id, response_status, response_body, expires_at)
  SELECT %(key_scope)s, %(key)s, %(fingerprint)s, %(method)s, %(path)s, %(job_id)s, 202, %(response_body)s,
         now() + make_interval(secs => %(ttl_seconds)s)
  FROM checked
  ON CONFLICT (scope, key) DO UPDATE
  SET fingerprint = EXCLUDED.fingerprint, method = EXCLUDED.method, path = EXCLUDED.path,
      job_id = EXCLUDED.job_id, response_status = EXCLUDED.response_status,
      response_body = EXCLUDED.response_body, created_at = now(), expires_at = EXCLUDED.expires_at
  WHERE idempotency_keys.expires_at <= now()
  RETURNING job_id
), job AS (
  INSERT INTO jobs (id, type, queue, actor, payload, max_attempts, request_id, caller)
  SELECT job_id, %(type)s, %(queue)s, %(actor)s, %(payload)s, %(max_attempts)s, %(request_id)s, %(caller)s
  FROM stored_key
  RETURNING id
)
SELECT (SELECT locked FROM lock) AS locked, EXISTS (SELECT 1 FROM checked) AS checked,
       EXISTS (SELECT 1 FROM job) AS created;

-- get_idempotency_key --
-- The live (unexpired) record stored under a key.
SELECT fingerprint, response_status, response_body
FROM idempotency_keys
WHERE scope = %(scope)s AND key = %(key)s AND expires_at > now();

-- no_check --
-- The check of a command that needs none.
SELECT 1;

-- purge_expired_idempotency_keys --
-- The reaper: drop keys past their 24 h life, a batch at a time.
DELETE FROM idempotency_keys
WHERE ctid IN (SELECT ctid FROM idempotency_keys WHERE expires_at <= now() LIMIT %(limit)s);

-- lock_idempotency_key --
-- Try to hold the key for this transaction; false: another request with it is in flight.
SELECT pg_try_advisory_xact_lock(hashtextextended(%(scope)s || E'\n' || %(key)s, 7)) AS locked;

-- store_idempotency_key --
-- Store a key with the response of a synchronous command, in that command's transaction.
INSERT INTO idempotency_keys (scope, key, fingerprint, method, path, job_id, response_status, response_body,
                              expires_at)
VALUES (%(scope)s, %(key)s, %(fingerprint)s, %(method)s, %(path)s, NULL, %(response_status)s,
        %(response_body)s, now() + make_interval(secs => %(ttl_seconds)s))
ON CONFLICT (scope, key) DO UPDATE
SET fingerprint = EXCLUDED.fingerprint, method = EXCLUDED.method, path = EXCLUDED.path, job_id = NULL,
    response_status = EXCLUDED.response_status, response_body = EXCLUDED.response_body, created_at = now(),
    expires_at = EXCLUDED.expires_at
WHERE idempotency_keys.expires_at <= now();
