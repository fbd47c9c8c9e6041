"""Keyset pagination: an opaque cursor naming the (created_at, id) of the last row of a page (the id a uuid,
or a ledger entry's number).

The OpenAPI document states the cursor's alphabet (unpadded base64url, ``Cursor``): anything else is a
malformed request (400). A cursor of that alphabet this server did not issue is well formed but
unprocessable (422, ``REQUEST_UNPROCESSABLE``): no schema can tell the two apart."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from litestar.params import Parameter

from gateway.problems import Problem
from shared.errors import Code

CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,200}$"

Cursor = Annotated[str | None, Parameter(
    pattern=CURSOR_PATTERN, description="the `next_cursor` of the previous page, as given (opaque)")]


def encode_cursor(created_at: datetime, row_id: UUID | int) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def unissued_cursor() -> Problem:
    return Problem(Code.REQUEST_UNPROCESSABLE, "cursor was not issued by this server",
                   errors=[{"field": "cursor", "message": "not a cursor of this list"}])


def decode_cursor(cursor: str | None) -> tuple[datetime | None, UUID | None]:
    if not cursor:
        return None, None
    moment, row_id = _decode(cursor)
    try:
        return moment, UUID(row_id)
    except ValueError as exc:
        raise unissued_cursor() from exc


def decode_entry_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """A cursor naming a ledger entry (its created_at and number)."""
    if not cursor:
        return None
    moment, entry_id = _decode(cursor)
    if not entry_id.isascii() or not entry_id.isdigit() or int(entry_id) >= 2**63 - 1:  # the page after: number + 1
        raise unissued_cursor()
    return moment, int(entry_id)


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, row_id = raw.split("|")
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:  # an issued cursor always carries the row's offset
            raise ValueError(created_at)
        return moment, row_id
    except (ValueError, UnicodeDecodeError) as exc:  # binascii.Error is a ValueError
        raise unissued_cursor() from exc


def next_cursor(rows: list[dict[str, Any]], limit: int) -> str | None:
    """Rows were fetched with LIMIT limit + 1: a further row means there is a next page."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor(last["created_at"], last["id"])
