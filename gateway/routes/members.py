"""A provider's members (owners and staff): add one by email (the user is made if new, and invited by a magic
link; the membership grants nothing until that link is used, so nobody is made a member of a provider
without their consent), list them, remove one. Each change and its audit entry commit in one transaction.
A provider never loses its last (accepted) owner: removals lock the provider's owners first
(``lock_owners``), so two owners removing each other at once cannot both succeed. Owners of the provider
(and the platform) may call every route here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec
import psycopg
from litestar import Request, Router, delete, get, post

from gateway.access import OWNERS, Grant, allow, request_ip
from gateway.problems import Problem, problem_responses, request_id_of
from gateway.ratelimit import Bucket
from gateway.reads import require_provider
from gateway.state import GatewayState
from shared import accounts, audit
from shared.db import QUERIES
from shared.errors import Code
from shared.schemas import Email

CONFLICT = Code.MEMBER_CONFLICT
INVITES_PER_HOUR = 20  # per provider: an invitation is an email to any address the owner names
AUTH = (Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NOT_FOUND)
PATH = "/providers/{provider_id:uuid}/members"
Role = Literal["owner", "staff"]


class MemberAdd(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    role: Role


class Member(msgspec.Struct):
    user_id: UUID
    email: str
    role: Role
    created_at: datetime
    accepted_at: datetime | None = None  # None: invited; the membership grants nothing until its link is used


class MemberList(msgspec.Struct):
    items: list[Member]


async def _row(conn: psycopg.AsyncConnection[Any], query: str, params: dict[str, Any]) -> dict[str, Any] | None:
    cur = await conn.execute(QUERIES[query], params)
    return await cur.fetchone()


def _entry(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, provider_id: UUID, action: str,
           user_id: UUID, **change: Any) -> dict[str, Any]:
    ip = request_ip(request, state.settings)
    return audit.params(grant.caller.actor(provider_id), provider_id, action, "user", user_id,
                        request_id=request_id_of(request) or None, ip=ip, **change)


@post(PATH, status_code=201, summary="Add a member by email (made a user if new) and invite them by magic link",
      responses=problem_responses(*AUTH, Code.VALIDATION_FAILED, CONFLICT))
async def add_member(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, provider_id: UUID,
                     data: MemberAdd) -> Member:
    verdict = await state.limiter.admit([Bucket("invite", str(provider_id), INVITES_PER_HOUR / 3600, INVITES_PER_HOUR)])
    if not verdict.admitted:
        raise Problem(Code.RATE_LIMITED, f"too many invitations; retry in {verdict.retry_after:.0f} s",
                      headers=verdict.headers())
    async with state.pool.connection() as conn, conn.transaction():
        provider = await _row(conn, "get_provider", {"id": provider_id})
        if provider is None or provider["deleted_at"] is not None:
            raise Problem(Code.NOT_FOUND, f"provider {provider_id} does not exist")
        user = await accounts.upsert_user(conn, data.email)
        added = await _row(conn, "add_membership", {"user_id": user["id"], "provider_id": provider_id,
                                                    "role": data.role})
        if added is None:  # raising rolls the transaction back: a user made just now is not kept either
            raise Problem(CONFLICT, f"{user['email']} is already a member of this provider")
        await accounts.issue_magic_link(conn, state.settings, user["email"], "invite", provider_id=provider_id,
                                        provider_name=provider["name"], role=data.role)
        await audit.record_async(conn, _entry(request, state, grant, provider_id, "member.add", user["id"],
                                              after={"email": user["email"], "role": data.role}))
    return Member(user_id=user["id"], email=user["email"], role=data.role, created_at=added["created_at"])


@get(PATH, summary="A provider's members, oldest first", responses=problem_responses(*AUTH))
async def list_members(state: GatewayState, provider_id: UUID) -> MemberList:
    async with state.pool.connection() as conn:
        cur = await conn.execute(QUERIES["list_members"], {"provider_id": provider_id})
        rows = await cur.fetchall()
    if not rows:
        await require_provider(state, provider_id)
    return MemberList(items=[msgspec.convert(row, Member) for row in rows])


@delete(PATH + "/{user_id:uuid}", status_code=204, summary="Remove a member (never the provider's last owner)",
        responses=problem_responses(*AUTH, CONFLICT))
async def remove_member(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, provider_id: UUID,
                        user_id: UUID) -> None:
    params = {"provider_id": provider_id, "user_id": user_id}
    async with state.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(QUERIES["lock_owners"], params)
        owners = [row["user_id"] for row in await cur.fetchall()]
        if owners == [user_id]:
            raise Problem(CONFLICT, f"user {user_id} is the provider's last owner; add another owner first")
        removed = await _row(conn, "remove_membership", params)
        if removed is None:
            raise Problem(Code.NOT_FOUND, f"user {user_id} is not a member of provider {provider_id}")
        await audit.record_async(conn, _entry(request, state, grant, provider_id, "member.remove", user_id,
                                              before={"email": removed["email"], "role": removed["role"]}))


router = Router(path="/v1", opt=allow(OWNERS), tags=["members"], route_handlers=[add_member, list_members,
                                                                                 remove_member])
