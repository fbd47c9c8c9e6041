-- use_public_token --
-- The live public token with this hash, its last use stamped (at most once a minute, to spare writes).
WITH token AS (
  SELECT id, provider_id, allowed_origins, last_used_at FROM public_tokens
  WHERE token_sha256 = %(digest)s AND revoked_at IS NULL
), touched AS (
  UPDATE public_tokens SET last_used_at = now()
  WHERE id = (SELECT id FROM token) AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
)
SELECT t.id, t.provider_id, t.allowed_origins FROM token t
JOIN providers p ON p.id = t.provider_id AND p.deleted_at IS NULL;

-- booking_of_customer_token --
SELECT id, provider_id FROM bookings WHERE customer_token_sha256 = %(digest)s;

-- use_session --
-- A live session (not revoked, not past its absolute end, used within the idle limit), touched, with its
-- user's platform role and memberships: one statement, no cache, so a revocation holds at the next request.
WITH live AS (
  UPDATE sessions s SET last_seen_at = now()
  FROM users u
  WHERE s.token_sha256 = %(digest)s AND s.revoked_at IS NULL AND s.expires_at > now()
    AND s.last_seen_at > now() - make_interval(secs => %(idle_seconds)s)
    AND u.id = s.user_id AND u.disabled_at IS NULL
  RETURNING s.id AS session_id, s.user_id, u.email, u.platform_role
)
SELECT l.session_id, l.user_id, l.email, l.platform_role,
       (SELECT jsonb_object_agg(m.provider_id, m.role) FROM memberships m
        JOIN providers p ON p.id = m.provider_id AND p.deleted_at IS NULL
        WHERE m.user_id = l.user_id AND m.accepted_at IS NOT NULL) AS memberships
FROM live l;

-- insert_owner_audit --
INSERT INTO owner_audit_log (provider_id, actor, actor_id, actor_role, action, target_type, target_id, before,
                             after, request_id, ip)
VALUES (%(provider_id)s, %(actor)s, %(actor_id)s, %(actor_role)s, %(action)s, %(target_type)s, %(target_id)s,
        %(before)s, %(after)s, %(request_id)s, %(ip)s);

-- list_owner_audit --
SELECT id, actor, actor_id, actor_role, action, target_type, target_id, before, after, request_id,
       host(ip) AS ip, created_at
FROM owner_audit_log
WHERE provider_id = %(provider_id)s AND (%(after_id)s::bigint IS NULL OR id < %(after_id)s)
ORDER BY id DESC LIMIT %(limit)s;

-- insert_public_token --
-- A widget token for a provider; only its SHA-256 is kept, and a prefix to tell it apart in lists.
INSERT INTO public_tokens (token_sha256, provider_id, prefix, name, allowed_origins)
VALUES (%(digest)s, %(provider_id)s, %(prefix)s, %(name)s, %(allowed_origins)s)
RETURNING id, provider_id, prefix, name, allowed_origins, created_at, last_used_at;

-- list_public_tokens --
SELECT id, provider_id, prefix, name, allowed_origins, created_at, last_used_at FROM public_tokens
WHERE provider_id = %(provider_id)s AND revoked_at IS NULL ORDER BY created_at, id;

-- revoke_public_token --
UPDATE public_tokens SET revoked_at = now()
WHERE id = %(id)s AND provider_id = %(provider_id)s AND revoked_at IS NULL
RETURNING id, provider_id, prefix, name, allowed_origins, created_at, last_used_at;

-- insert_owner_audit_for_booking --
-- The owner audit row of a booking command (cancel, complete) done by a user, in the command's transaction.
INSERT INTO owner_audit_log (provider_id, actor, actor_id, actor_role, action, target_type, target_id, before,
                             after, request_id, ip)
SELECT provider_id, %(actor)s, %(actor_id)s, %(actor_role)s, %(action)s, 'booking', id::text, %(before)s,
       %(after)s, %(request_id)s, %(ip)s
FROM bookings WHERE id = %(booking_id)s;
