-- Owners and staff: users (email unique whatever its case), their memberships of providers, magic links
-- and sessions. Every token is kept only as its SHA-256; a magic link's token is never stored at all (the
-- notifications worker derives it again from the link's id).

-- upsert_user --
-- The user with this address (any case), made if there is none; a given platform role is set, none keeps
-- the current one. `created` says whether this statement made it. Safe under concurrent calls (the unique
-- index users_email_key arbitrates; the loser's statement returns the winner's row).
INSERT INTO users (email, platform_role) VALUES (%(email)s, %(platform_role)s)
ON CONFLICT (lower(email)) DO UPDATE SET platform_role = coalesce(EXCLUDED.platform_role, users.platform_role)
RETURNING id, email, platform_role, xmax = 0 AS created;

-- issue_magic_link --
-- A sign-in (or invitation) link for the live user with this address, in one statement: the user's earlier
-- open links are revoked, the new one stored by its hash, and the email to send it staged in the outbox
-- (its payload names the link, never its token, and no provider: the mail goes to the user alone). An
-- unknown or disabled address: no row, nothing written.
WITH target AS (
  SELECT id, email FROM users WHERE lower(email) = lower(%(email)s) AND disabled_at IS NULL
), revoked AS (  -- a sign-in link revokes earlier sign-in links; an invitation, that provider's earlier one
  UPDATE magic_links SET revoked_at = now()
  WHERE user_id = (SELECT id FROM target) AND used_at IS NULL AND revoked_at IS NULL
    AND purpose = %(purpose)s AND provider_id IS NOT DISTINCT FROM %(provider_id)s::uuid
), link AS (
  INSERT INTO magic_links (id, user_id, purpose, provider_id, token_sha256, expires_at)
  SELECT %(id)s, t.id, %(purpose)s, %(provider_id)s::uuid, %(digest)s,
         now() + make_interval(secs => %(ttl_seconds)s) FROM target t
  RETURNING id, user_id, purpose, expires_at
), event AS (
  INSERT INTO outbox (topic, aggregate_id, payload)
  SELECT %(topic)s, l.id,
         jsonb_build_object('magic_link_id', l.id, 'email', t.email, 'purpose', l.purpose) || %(extra)s::jsonb
  FROM link l JOIN target t ON t.id = l.user_id
)
SELECT l.id, l.user_id, t.email, l.purpose, l.expires_at FROM link l JOIN target t ON t.id = l.user_id;

-- consume_magic_link --
-- Use a link up, once: only an unused, unrevoked, unexpired link matches, and the UPDATE's row lock makes
-- a concurrent second use find it used. The session it opens is stored by its hash; an invitation's link
-- also accepts the membership it invites to (until then the membership grants nothing). No row: the token
-- is unknown, used, revoked or expired (or its user is disabled), and nothing is opened.
WITH link AS (
  UPDATE magic_links SET used_at = now()
  WHERE token_sha256 = %(digest)s AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()
  RETURNING id, user_id, purpose, provider_id
), accepted AS (
  UPDATE memberships ms SET accepted_at = now()
  FROM link l WHERE ms.user_id = l.user_id AND ms.provider_id = l.provider_id AND ms.accepted_at IS NULL
  RETURNING ms.provider_id
), member AS (
  SELECT u.id, u.email, u.platform_role, l.purpose FROM link l
  JOIN users u ON u.id = l.user_id AND u.disabled_at IS NULL
), session AS (
  INSERT INTO sessions (user_id, token_sha256, expires_at, ip, user_agent)
  SELECT id, %(session_digest)s, now() + make_interval(secs => %(absolute_seconds)s), %(ip)s::inet, %(user_agent)s
  FROM member
  RETURNING id, user_id, created_at, expires_at
)
SELECT s.id AS session_id, s.created_at, s.expires_at, m.id AS user_id, m.email, m.platform_role, m.purpose,
       coalesce((SELECT jsonb_agg(jsonb_build_object('provider_id', ms.provider_id, 'role', ms.role)
                                  ORDER BY ms.created_at, ms.provider_id)
                 FROM memberships ms JOIN providers p ON p.id = ms.provider_id AND p.deleted_at IS NULL
                 WHERE ms.user_id = m.id
                   AND (ms.accepted_at IS NOT NULL OR ms.provider_id IN (SELECT provider_id FROM accepted))),
                '[]') AS memberships
FROM session s JOIN member m ON m.id = s.user_id;

-- list_user_sessions --
-- A user's live sessions (the same test use_session applies), newest first; `current` marks the caller's.
SELECT id, created_at, last_seen_at, expires_at,
       least(expires_at, last_seen_at + make_interval(secs => %(idle_seconds)s)) AS ends_at,
       host(ip) AS ip, user_agent, id = %(current)s AS current
FROM sessions
WHERE user_id = %(user_id)s AND revoked_at IS NULL AND expires_at > now()
  AND last_seen_at > now() - make_interval(secs => %(idle_seconds)s)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- revoke_user_session --
-- End one of the user's own sessions (another user's session id finds nothing).
UPDATE sessions SET revoked_at = now()
WHERE id = %(id)s AND user_id = %(user_id)s AND revoked_at IS NULL AND expires_at > now()
RETURNING id;

-- revoke_other_sessions --
-- End every open session of the user but the one making the request.
UPDATE sessions SET revoked_at = now()
WHERE user_id = %(user_id)s AND id <> %(current)s AND revoked_at IS NULL AND expires_at > now()
RETURNING id;

-- add_membership --
-- Make the user a member of the provider; no row when they already are one (of any role).
INSERT INTO memberships (user_id, provider_id, role) VALUES (%(user_id)s, %(provider_id)s, %(role)s)
ON CONFLICT (user_id, provider_id) DO NOTHING
RETURNING user_id, provider_id, role, created_at;

-- upsert_membership --
-- The seed's membership: made (accepted), or its role set (re-runnable).
INSERT INTO memberships (user_id, provider_id, role, accepted_at) VALUES (%(user_id)s, %(provider_id)s, %(role)s, now())
ON CONFLICT (user_id, provider_id) DO UPDATE SET role = EXCLUDED.role, accepted_at = coalesce(memberships.accepted_at, now())
RETURNING user_id, provider_id, role, created_at;

-- list_members --
-- A provider's members (invited ones too), oldest first.
SELECT u.id AS user_id, u.email, m.role, m.created_at, m.accepted_at
FROM memberships m JOIN users u ON u.id = m.user_id
WHERE m.provider_id = %(provider_id)s
ORDER BY m.created_at, u.id;

-- lock_owners --
-- The provider's owners, locked until the transaction ends: two owners removing each other at once are
-- serialised here, so the second sees the first gone and the provider always keeps an owner.
SELECT user_id FROM memberships WHERE provider_id = %(provider_id)s AND role = 'owner' AND accepted_at IS NOT NULL
FOR UPDATE;

-- remove_membership --
DELETE FROM memberships m USING users u
WHERE m.provider_id = %(provider_id)s AND m.user_id = %(user_id)s AND u.id = m.user_id
RETURNING m.user_id, u.email, m.role, m.created_at;

-- list_provider_audit --
-- A provider's audit log, newest first, keyset-paginated on id: its own rows, and the sign-ins and
-- sign-outs (which belong to no provider) of its current members since they joined it (not before).
SELECT id, actor, actor_id, actor_role, action, target_type, target_id, before, after, request_id,
       host(ip) AS ip, created_at
FROM (
  (SELECT * FROM owner_audit_log
   WHERE provider_id = %(provider_id)s AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
   ORDER BY id DESC LIMIT %(limit)s)
  UNION ALL
  (SELECT * FROM owner_audit_log
   WHERE provider_id IS NULL AND action LIKE 'session.%%'
     AND EXISTS (SELECT 1 FROM memberships m
                 WHERE m.provider_id = %(provider_id)s AND m.user_id::text = owner_audit_log.actor_id
                   AND m.accepted_at IS NOT NULL AND owner_audit_log.created_at >= m.accepted_at)
     AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
   ORDER BY id DESC LIMIT %(limit)s)
) entries
ORDER BY id DESC LIMIT %(limit)s;
