"""Keyset pagination: an opaque cursor naming the (created_at, id) of the last row of a page."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any
from uuid import UUID

from gateway.problems import Problem
from shared.errors import Code


def encode_cursor(created_at: datetime, row_id: UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime | None, UUID | None]:
    if not cursor:
        return None, None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, row_id = raw.split("|")
        return datetime.fromisoformat(created_at), UUID(row_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(Code.VALIDATION_FAILED, "cursor is not valid",
                      errors=[{"field": "cursor", "message": "invalid"}]) from exc


def next_cursor(rows: list[dict[str, Any]], limit: int) -> str | None:
    """Rows were fetched with LIMIT limit + 1: a further row means there is a next page."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor(last["created_at"], last["id"])
