-- acquire_leadership --
-- Take or renew the named lease; a row back means this holder leads until expires_at.
INSERT INTO scheduler_leases (name, holder, expires_at)
VALUES (%(name)s, %(holder)s, now() + make_interval(secs => %(ttl_seconds)s))
ON CONFLICT (name) DO UPDATE
SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at, updated_at = now()
WHERE scheduler_leases.holder = EXCLUDED.holder OR scheduler_leases.expires_at < now()
RETURNING holder, expires_at;

-- release_leadership --
-- Step down on a clean shutdown so another instance takes over at once.
DELETE FROM scheduler_leases WHERE name = %(name)s AND holder = %(holder)s;
