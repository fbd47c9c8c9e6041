-- A provider's webhook endpoints (Standard Webhooks v1). Every statement is scoped by provider_id AND id;
-- only the insert and the rotation return a secret, the one answer that shows it.

-- webhook_endpoint_insert --
-- A new endpoint of a live provider; no row when the provider does not exist (or is deleted).
INSERT INTO webhook_endpoints (provider_id, url, events, secret)
SELECT p.id, %(url)s, %(events)s, %(secret)s FROM providers p
WHERE p.id = %(provider_id)s AND p.deleted_at IS NULL
RETURNING id, url, events, status, disabled_reason, created_at, secret;

-- webhook_endpoint_list --
-- A provider's live endpoints, oldest first, keyset-paginated on (created_at, id); never a secret.
SELECT id, url, events, status, disabled_reason, created_at FROM webhook_endpoints
WHERE provider_id = %(provider_id)s AND deleted_at IS NULL
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (created_at, id) > (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY created_at, id LIMIT %(limit)s;

-- webhook_endpoint_get --
-- One live endpoint of this provider; never a secret.
SELECT id, url, events, status, disabled_reason, created_at FROM webhook_endpoints
WHERE provider_id = %(provider_id)s AND id = %(id)s AND deleted_at IS NULL;

-- webhook_endpoint_delete --
-- Soft-delete an endpoint: nothing more is sent to it; its deliveries and attempts stay.
UPDATE webhook_endpoints SET deleted_at = now()
WHERE provider_id = %(provider_id)s AND id = %(id)s AND deleted_at IS NULL
RETURNING id;

-- webhook_endpoint_rotate_secret --
-- A new signing secret; the current one stays valid (both sign) for 24 hours. A second rotation within
-- that day drops the oldest.
UPDATE webhook_endpoints
SET previous_secret = secret, previous_secret_expires_at = now() + interval '24 hours', secret = %(secret)s
WHERE provider_id = %(provider_id)s AND id = %(id)s AND deleted_at IS NULL
RETURNING id, secret, previous_secret_expires_at;

-- webhook_endpoint_recover --
-- The owner fixed the endpoint: it is enabled again (a disabled one takes no messages), and every failed or
-- dead delivery to it created since then is due now, for the scheduler's re-drive to send. Attempts already
-- made stay counted: each recovered message gets one more attempt.
WITH endpoint AS (
  UPDATE webhook_endpoints SET status = 'active', disabled_reason = NULL, failing_since = NULL
  WHERE provider_id = %(provider_id)s AND id = %(id)s AND deleted_at IS NULL
  RETURNING id, provider_id
)
UPDATE deliveries d SET status = 'failed', next_attempt_at = now()
FROM endpoint e
WHERE d.endpoint_id = e.id AND d.provider_id = e.provider_id
  AND d.status IN ('failed', 'dead') AND d.created_at >= %(since)s
RETURNING d.id;
