"""Postgres access: named-query loader, pools, and the one place psycopg errors are translated.

A refusal by a constraint (CHECK, UNIQUE, EXCLUDE, or a trigger raising with a constraint name) becomes
the domain error ``CONSTRAINT_ERRORS`` names for it, inside ``translate_errors``; a constraint it does not
name surfaces as ``ConstraintViolation`` carrying the name, for the one caller that expects it. Connection
errors are left as they are: callers retry (``with_reconnect``) or fail the job as transient.

Queries live in ``sql/queries/<domain>.sql`` as named blocks::

    -- claim_job --
    -- Take a queued job (or one whose lease ran out) for this worker.
    UPDATE jobs ...;

They are parsed once at import into ``QUERIES`` and executed with ``%(name)s`` parameters.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, LiteralString, TypeVar

import msgspec
import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from shared.errors import (
    BookingCheckInTooEarly,
    BookingInvalidTransition,
    BookingSlotTaken,
    DepositNotSettleable,
    DomainError,
    InvalidValue,
    ProviderSlugTaken,
)

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_BLOCK = re.compile(r"^-- ([a-z_][a-z0-9_]*) --\s*$", re.MULTILINE)


def load_queries(directory: Path = SQL_DIR / "queries") -> dict[str, LiteralString]:
    queries: dict[str, LiteralString] = {}
    for path in sorted(directory.glob("*.sql")):
        parts = _BLOCK.split(path.read_text())
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in queries:
                raise ValueError(f"query {name!r} defined twice (second time in {path.name})")
            lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
            # LiteralString for pyright's sake (psycopg's Query); mypy reads it as str
            queries[name] = "\n".join(lines).strip().rstrip(";")
    return queries


QUERIES = load_queries()

Pool = ConnectionPool[psycopg.Connection[DictRow]]
AsyncPool = AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]


T = TypeVar("T")


async def with_reconnect(operation: Callable[[], Awaitable[T]]) -> T:
    """Run a database operation, once more on a fresh connection if the first one was dead (Postgres
    restarted since it was pooled). Only for operations that are safe twice: reads, and the accept
    statement, whose idempotency key turns a repeat into a replay. A pool timeout (every connection busy
    for ``DB_POOL_WAIT_SECONDS``) is not a dead connection: it is not retried, the caller answers 503."""
    try:
        return await operation()
    except PoolTimeout:
        raise
    except psycopg.OperationalError:
        return await operation()


# Constraint name -> the domain error it means, with what to tell the caller. The one map in the project.
CONSTRAINT_ERRORS: dict[str, tuple[type[DomainError], str]] = {
    "bookings_no_overlap": (BookingSlotTaken, "the requested time overlaps an existing booking"),
    "bookings_valid_transition": (BookingInvalidTransition, "that status change is not allowed"),
    "bookings_request_lapsed": (BookingInvalidTransition, "the request lapsed before it was answered"),
    "bookings_check_in_from_first_day": (BookingCheckInTooEarly, "the stay has not begun: check-in opens on "
                                                                 "its first day"),
    "booking_deposits_valid_transition": (DepositNotSettleable, "the deposit is settled already"),
    "providers_slug_key": (ProviderSlugTaken, "a provider with that slug exists"),
    "resource_hours_check": (InvalidValue, "each window must close after it opens"),
}


def expect_row(row: DictRow | None, query: str) -> DictRow:
    """The row a statement always returns (an INSERT's RETURNING, an aggregate); its absence is a bug."""
    if row is None:
        raise RuntimeError(f"{query} returned no row")
    return row


class ConstraintViolation(Exception):
    """A database constraint CONSTRAINT_ERRORS does not name refused a change; ``constraint`` says which."""

    def __init__(self, constraint: str, message: str) -> None:
        super().__init__(message)
        self.constraint = constraint


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise a constraint's refusal as the domain error named for it, else as ConstraintViolation."""
    try:
        yield
    except psycopg.errors.IntegrityError as exc:
        name = exc.diag.constraint_name or ""
        known = CONSTRAINT_ERRORS.get(name)
        if known is not None:
            error_class, detail = known
            raise error_class(detail) from exc
        raise ConstraintViolation(name, str(exc).splitlines()[0]) from exc


def use_msgspec_json() -> None:
    """jsonb in and out through msgspec (Structs encode directly; several times faster than stdlib json)."""
    set_json_dumps(msgspec.json.encode)
    set_json_loads(msgspec.json.decode)


def _options(settings: dict[str, str]) -> str:
    return " ".join(f"-c {key}={value}" for key, value in settings.items())


def _connection_kwargs(url: str, name: str, session: dict[str, str] | None) -> dict[str, Any]:
    """Every pooled connection: dict rows, autocommit (a lone statement is its own transaction), UTC. An
    operator's own ``options`` (in the URL, else ``PGOPTIONS``) and ``application_name`` are kept: theirs come
    first and ours after, so a ``-c statement_timeout=…`` holds while the session stays UTC (the last ``-c``
    of a setting wins)."""
    given = conninfo_to_dict(url)
    operator = given.get("options") or os.environ.get("PGOPTIONS", "")
    ours = _options({"TimeZone": "UTC", **(session or {})})
    return {"row_factory": dict_row, "application_name": given.get("application_name") or name, "autocommit": True,
            "options": f"{operator} {ours}".strip()}


def open_pool(
    url: str, *, max_size: int = 10, name: str = "totem", session: dict[str, str] | None = None
) -> Pool:
    use_msgspec_json()
    pool = Pool(
        url,
        connection_class=psycopg.Connection[DictRow],
        min_size=1,
        max_size=max_size,
        kwargs=_connection_kwargs(url, name, session),
        name=name,
        open=False,
    )
    pool.open(wait=True, timeout=30)
    return pool


async def open_async_pool(
    url: str, *, max_size: int = 10, name: str = "totem-gateway", session: dict[str, str] | None = None,
    wait_seconds: float = 2.0,
) -> AsyncPool:
    """A request waits at most ``wait_seconds`` for a connection (Postgres down: a fast 503, not a hang)."""
    use_msgspec_json()
    pool = AsyncPool(
        url,
        connection_class=psycopg.AsyncConnection[DictRow],
        timeout=wait_seconds,
        min_size=2,
        max_size=max_size,
        kwargs=_connection_kwargs(url, name, session),
        name=name,
        open=False,
    )
    await pool.open(wait=True, timeout=30)
    return pool
