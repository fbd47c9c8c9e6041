"""The owner audit log (``owner_audit_log``, append-only): every owner, staff and admin action, written in
the transaction of the action itself, with who did it (verified), what, on which target, before and after,
the request id and the client's IP. ``record`` and ``record_async`` take the connection of that
transaction."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared.db import QUERIES


def params(actor: dict[str, Any], provider_id: Any, action: str, target_type: str | None = None,
           target_id: Any = None, *, before: Any = None, after: Any = None, request_id: str | None = None,
           ip: str | None = None) -> dict[str, Any]:
    """``actor`` is what ``Caller.actor()`` (gateway) or a job's recorded caller says: actor, actor_id,
    actor_role."""
    return {"provider_id": provider_id, "actor": actor["actor"], "actor_id": actor.get("actor_id"),
            "actor_role": actor.get("actor_role"), "action": action, "target_type": target_type,
            "target_id": None if target_id is None else str(target_id),
            "before": None if before is None else Jsonb(before), "after": None if after is None else Jsonb(after),
            "request_id": request_id, "ip": ip if ip and ip != "unknown" else None}


def record(conn: psycopg.Connection[Any], entry: dict[str, Any]) -> None:
    conn.execute(QUERIES["insert_owner_audit"], entry)


async def record_async(conn: psycopg.AsyncConnection[Any], entry: dict[str, Any]) -> None:
    await conn.execute(QUERIES["insert_owner_audit"], entry)
