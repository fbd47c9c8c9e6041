"""Owners and staff: users, memberships, magic links and sessions, as plain functions over a connection.

Invariants (each held by one statement in ``sql/queries/auth.sql``):
* A user is one address whatever its case (``users_email_key`` on ``lower(email)``).
* A magic link's token is derived from its id with ``TOKEN_SECRET`` (``tokens.derive``) and never stored
  or sent anywhere but in the email: the table keeps its SHA-256, the outbox event only the link's id, and
  the notifications worker derives the token again to write the link. A new link revokes the user's
  earlier open ones in the same statement that stores it.
* A link opens at most one session: the consuming UPDATE matches only an unused, unrevoked, unexpired link
  and marks it used, so a second use (or a concurrent one) finds nothing.
* An unknown address gets nothing: no user, no link, no email, and the caller cannot tell (the gateway
  answers the same either way).
* A session token is random (``st_``), shown once, stored as its SHA-256; it ends ``SESSION_ABSOLUTE_SECONDS``
  after sign-in whatever happens, and sooner when idle or revoked (``use_session`` checks at each request).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from shared import audit, tokens
from shared.config import Settings
from shared.db import QUERIES, expect_row

Purpose = Literal["sign_in", "invite"]
TOPIC = {"sign_in": "sign_in_link", "invite": "member_invited"}  # the outbox topic (and template) per purpose
USER_TOPICS = frozenset(TOPIC.values())


@dataclass(frozen=True, slots=True)
class IssuedLink:
    id: uuid.UUID
    user_id: uuid.UUID
    email: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SignedIn:
    session_id: uuid.UUID
    session_token: str  # shown once, to the caller that signed in
    expires_at: datetime
    user_id: uuid.UUID
    email: str
    platform_role: str | None
    memberships: list[dict[str, Any]]  # [{provider_id, role}]


def user_actor(user_id: uuid.UUID | str, role: str | None = None) -> dict[str, Any]:
    """A signed-in user as an audit entry's actor (``Caller.actor()`` gives the same for a request's caller)."""
    return {"actor": "user", "actor_id": str(user_id), "actor_role": role}


async def upsert_user(conn: psycopg.AsyncConnection[Any], email: str) -> dict[str, Any]:
    """The user with this address, made if there is none (``created`` says which)."""
    cur = await conn.execute(QUERIES["upsert_user"], {"email": email, "platform_role": None})
    return expect_row(await cur.fetchone(), "upsert_user")


async def issue_magic_link(conn: psycopg.AsyncConnection[Any], settings: Settings, email: str, purpose: Purpose,
                           provider_id: uuid.UUID | None = None, **event: Any) -> IssuedLink | None:
    """Store a link for the live user with this address and stage its email (in the caller's transaction);
    None (and nothing written) when there is no such user. ``event`` adds to the email's payload (an
    invitation's ``provider_name`` and ``role``)."""
    link_id = uuid.uuid4()
    token = tokens.derive(settings.token_secret, tokens.MAGIC_LINK, link_id)
    cur = await conn.execute(QUERIES["issue_magic_link"], {
        "id": link_id, "email": email, "purpose": purpose, "provider_id": provider_id, "digest": tokens.digest(token),
        "ttl_seconds": settings.magic_link_ttl_seconds, "topic": TOPIC[purpose], "extra": Jsonb(event)})
    row = await cur.fetchone()
    if row is None:
        return None
    return IssuedLink(id=row["id"], user_id=row["user_id"], email=row["email"], expires_at=row["expires_at"])


async def sign_in(conn: psycopg.AsyncConnection[Any], settings: Settings, magic_token: str, *,
                  ip: str | None = None, user_agent: str | None = None,
                  request_id: str | None = None) -> SignedIn | None:
    """Use a magic link up and open a session, with its ``session.sign_in`` audit entry, in one transaction;
    None (nothing changed) when the token is unknown, used, revoked or expired."""
    if not magic_token.startswith(tokens.MAGIC_LINK) or len(magic_token) > 200:
        return None
    session_token = tokens.new_token(tokens.SESSION)
    async with conn.transaction():
        cur = await conn.execute(QUERIES["consume_magic_link"], {
            "digest": tokens.digest(magic_token), "session_digest": tokens.digest(session_token),
            "absolute_seconds": settings.session_absolute_seconds, "ip": ip,
            "user_agent": (user_agent or "")[:500] or None})
        row = await cur.fetchone()
        if row is None:
            return None
        await audit.record_async(conn, audit.params(
            user_actor(row["user_id"], row["platform_role"]), None, "session.sign_in", "session", row["session_id"],
            after={"purpose": row["purpose"], "user_agent": user_agent}, request_id=request_id, ip=ip))
    return SignedIn(session_id=row["session_id"], session_token=session_token, expires_at=row["expires_at"],
                    user_id=row["user_id"], email=row["email"], platform_role=row["platform_role"],
                    memberships=list(row["memberships"]))


async def sign_out(conn: psycopg.AsyncConnection[Any], user_id: uuid.UUID, session_ids: list[uuid.UUID], *,
                   current: uuid.UUID | None, request_id: str | None = None, ip: str | None = None) -> None:
    """The ``session.sign_out`` audit entries of sessions just revoked (in the revoking transaction)."""
    for session_id in session_ids:
        await audit.record_async(conn, audit.params(
            user_actor(user_id), None, "session.sign_out", "session", session_id,
            after={"by_session": str(current) if current else None}, request_id=request_id, ip=ip))


async def revoke_session(conn: psycopg.AsyncConnection[Any], user_id: uuid.UUID, session_id: uuid.UUID, *,
                         current: uuid.UUID | None, request_id: str | None = None, ip: str | None = None) -> bool:
    """End one of the user's own open sessions (False: no such open session of theirs)."""
    async with conn.transaction():
        cur = await conn.execute(QUERIES["revoke_user_session"], {"id": session_id, "user_id": user_id})
        if await cur.fetchone() is None:
            return False
        await sign_out(conn, user_id, [session_id], current=current, request_id=request_id, ip=ip)
    return True


async def revoke_other_sessions(conn: psycopg.AsyncConnection[Any], user_id: uuid.UUID, current: uuid.UUID, *,
                                request_id: str | None = None, ip: str | None = None) -> list[uuid.UUID]:
    """End every open session of the user but ``current``; the ids ended."""
    async with conn.transaction():
        cur = await conn.execute(QUERIES["revoke_other_sessions"], {"user_id": user_id, "current": current})
        ended = [row["id"] for row in await cur.fetchall()]
        await sign_out(conn, user_id, ended, current=current, request_id=request_id, ip=ip)
    return ended
