-- lock_idempotency_key --
-- Try to hold the key for this transaction; false means another request with it is in flight.
SELECT pg_try_advisory_xact_lock(hashtextextended(%(scope)s || E'\n' || %(key)s, 7)) AS locked;

-- get_idempotency_key --
-- The live (unexpired) record stored under a key.
SELECT fingerprint, response_status, response_body
FROM idempotency_keys
WHERE scope = %(scope)s AND key = %(key)s AND expires_at > now();

-- store_idempotency_key --
-- Store key + response in the transaction that created the job; an expired row is replaced.
INSERT INTO idempotency_keys
  (scope, key, fingerprint, method, path, job_id, response_status, response_body, expires_at)
VALUES (%(scope)s, %(key)s, %(fingerprint)s, %(method)s, %(path)s, %(job_id)s,
        %(response_status)s, %(response_body)s, now() + make_interval(secs => %(ttl_seconds)s))
ON CONFLICT (scope, key) DO UPDATE
SET fingerprint = EXCLUDED.fingerprint, method = EXCLUDED.method, path = EXCLUDED.path,
    job_id = EXCLUDED.job_id, response_status = EXCLUDED.response_status,
    response_body = EXCLUDED.response_body, created_at = now(), expires_at = EXCLUDED.expires_at
WHERE idempotency_keys.expires_at <= now();

-- purge_expired_idempotency_keys --
-- The reaper: drop keys past their 24 h life, a batch at a time.
DELETE FROM idempotency_keys
WHERE ctid IN (SELECT ctid FROM idempotency_keys WHERE expires_at <= now() LIMIT %(limit)s);
