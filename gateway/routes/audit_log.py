"""A provider's owner audit log (append-only, ``owner_audit_log``): who did what to which target, before and
after, with the request id and client IP; newest first. It holds the provider's own entries and the
sign-ins and sign-outs of its current members. Owners of the provider (and the platform) may read it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import get
from litestar.params import Parameter

from gateway.access import OWNERS, allow
from gateway.problems import problem_responses
from gateway.reads import fetch_rows, require_provider
from gateway.state import GatewayState
from shared.errors import Code

Limit = Annotated[int, Parameter(ge=1, le=200)]


class AuditEntry(msgspec.Struct):
    id: int
    actor: str  # user, public_token, system
    actor_id: str | None
    actor_role: str | None  # owner, staff, admin, system: the actor's role in this provider then
    action: str  # e.g. member.add, session.sign_in
    target_type: str | None
    target_id: str | None
    before: Any
    after: Any
    request_id: str | None
    ip: str | None
    created_at: datetime


class AuditPage(msgspec.Struct):
    items: list[AuditEntry]
    next_cursor: str | None  # pass as ?cursor= for the next (older) page


# The audit log's cursor is the id of the last entry seen: digits, which the document states, so every cursor
# the schema admits is one this list can take.
AuditCursor = Annotated[str | None, Parameter(pattern=r"^[0-9]{1,18}$",
                                              description="the `next_cursor` of the previous page, as given")]


def _before_id(cursor: str | None) -> int | None:
    return int(cursor) if cursor else None


@get("/v1/providers/{provider_id:uuid}/audit-log", opt=allow(OWNERS), tags=["audit"],
     summary="The provider's audit log, newest first (owners)",
     responses=problem_responses(Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NOT_FOUND, Code.VALIDATION_FAILED))
async def list_audit_log(state: GatewayState, provider_id: UUID, limit: Limit = 50,
                         cursor: AuditCursor = None) -> AuditPage:
    rows = await fetch_rows(state, "list_provider_audit",
                            {"provider_id": provider_id, "before_id": _before_id(cursor), "limit": limit + 1})
    if not rows and cursor is None:
        await require_provider(state, provider_id)
    more = len(rows) > limit
    return AuditPage(items=[msgspec.convert(row, AuditEntry) for row in rows[:limit]],
                     next_cursor=str(rows[limit - 1]["id"]) if more else None)
