-- All SQL one booking costs: the gateway accept transaction, then the job.
\set s random(1, 400000000)
\set r random(1, :nres)
BEGIN;
SELECT pg_try_advisory_xact_lock(hashtextextended('anonymous' || E'\n' || ('k' || :s::text), 7)) AS locked;
SELECT fingerprint, response_status, response_body FROM idempotency_keys WHERE scope = 'anonymous' AND key = ('k' || :s::text) AND expires_at > now();
SELECT r.id FROM bench_resources br JOIN resources r ON r.id = br.resource_id JOIN providers p ON p.id = r.provider_id AND p.deleted_at IS NULL JOIN resource_services rs ON rs.resource_id = r.id JOIN services s ON s.id = rs.service_id AND s.deleted_at IS NULL WHERE br.n = :r AND r.kind = 'slot' AND r.deleted_at IS NULL;
INSERT INTO jobs (id, type, queue, actor, payload, max_attempts, request_id) VALUES (('00000000-0000-4000-8000-' || lpad(to_hex(:s::bigint), 12, '0'))::uuid, 'booking.create', 'bookings', 'create_booking', '{"kind": "slot", "resource_id": "6c653742-a868-4672-927a-011cfc771b7f", "service_id": "dac7a026-4258-4192-8383-8eeb37c7f1f5", "start_at": "2031-06-02T10:00:00+02:00", "customer": {"name": "Bench Customer", "email": "bench@example.com", "phone": null}}', 5, 'bench-request-id') ON CONFLICT DO NOTHING;
INSERT INTO idempotency_keys (scope, key, fingerprint, method, path, job_id, response_status, response_body, expires_at) VALUES ('anonymous', ('k' || :s::text), sha256(('k' || :s::text)::bytea), 'POST', '/v1/bookings', NULL, 202, '{"job_id": "00000000-0000-0000-0000-000000000000", "status_url": "/v1/jobs/00000000-0000-0000-0000-000000000000"}', now() + interval '1 day') ON CONFLICT (scope, key) DO NOTHING;
COMMIT;
BEGIN;
SET LOCAL synchronous_commit = off;
UPDATE jobs SET status = 'running', attempts = attempts + 1, claim_token = gen_random_uuid(),
       claimed_until = now() + interval '30 seconds', result = NULL, error = NULL, updated_at = now()
WHERE id = (SELECT job_id FROM bench_clients WHERE client_id = :client_id)
RETURNING id, type, payload, attempts, max_attempts, request_id;
COMMIT;
BEGIN;
WITH offer AS (
  SELECT r.id AS resource_id, r.provider_id, p.hold_ttl_seconds,
         s.id AS service_id, s.name, s.duration_minutes, s.price, s.currency
  FROM bench_resources br
  JOIN resources r ON r.id = br.resource_id
  JOIN providers p ON p.id = r.provider_id AND p.deleted_at IS NULL
  JOIN resource_services rs ON rs.resource_id = r.id
  JOIN services s ON s.id = rs.service_id AND s.deleted_at IS NULL
  WHERE br.n = :r AND r.kind = 'slot' AND r.deleted_at IS NULL
), booking AS (
  INSERT INTO bookings (id, kind, status, resource_id, provider_id, period, amount, currency,
                        service_snapshot, customer, hold_expires_at, created_by_job)
  SELECT gen_random_uuid(), 'slot', 'pending_payment', resource_id, provider_id,
         tstzrange(timestamptz '2030-01-01 00:00Z' + :s * interval '1 minute',
                   timestamptz '2030-01-01 00:00Z' + :s * interval '1 minute' + make_interval(mins => duration_minutes), '[)'),
         price, currency,
         jsonb_build_object('service_id', service_id, 'name', name, 'duration_minutes', duration_minutes,
                            'price', price, 'currency', currency),
         '{"name": "Bench Customer", "email": "bench@example.com", "phone": null}'::jsonb,
         now() + make_interval(secs => coalesce(hold_ttl_seconds, 900)), gen_random_uuid()
  FROM offer
  ON CONFLICT DO NOTHING
  RETURNING id, status, provider_id, resource_id, period, amount, currency, hold_expires_at
), audit AS (
  INSERT INTO booking_audit_log (booking_id, actor, from_status, to_status, reason, job_id)
  SELECT id, 'customer', NULL, status, 'booking requested', gen_random_uuid() FROM booking
), event AS (
  INSERT INTO outbox (topic, aggregate_id, payload)
  SELECT 'booking_created', id,
         jsonb_build_object('booking_id', id, 'provider_id', provider_id, 'resource_id', resource_id,
                            'status', status, 'start_at', lower(period), 'end_at', upper(period),
                            'amount', amount, 'currency', currency, 'link', '/booking/' || id)
  FROM booking
)
SELECT id, status, hold_expires_at FROM booking;
UPDATE jobs SET status = 'succeeded',
       result = '{"booking_id": "00000000-0000-0000-0000-000000000000", "status": "pending_payment", "hold_expires_at": "2030-01-01T00:15:00Z"}',
       error = NULL, claim_token = NULL, claimed_until = NULL, updated_at = now()
WHERE id = (SELECT job_id FROM bench_clients WHERE client_id = :client_id);
COMMIT;
