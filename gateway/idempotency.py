"""The Idempotency-Key protocol (IETF draft "The Idempotency-Key HTTP Header Field", Stripe), in one place.

Accepting a command is ONE statement, so ONE transaction (``accept_command`` in sql/queries): try the
key's advisory lock, run the command's check, store the key with its fingerprint and the 202 response,
insert the job row; commit; answer 202 and hand the job id to the batching enqueuer. So:

* the key, the job and the response are durable together, before the client hears anything;
* a repeat with the same fingerprint replays the stored response (``Idempotent-Replayed: true``);
* the same key with another fingerprint is refused with 422 ``IDEMPOTENCY_KEY_REUSED``;
* while a request holding the key is still in its transaction, a second one gets 409
  ``IDEMPOTENCY_KEY_IN_FLIGHT`` (``pg_try_advisory_xact_lock``; it never waits);
* the in-flight lease is the transaction itself: if the gateway crashes, Postgres rolls it back when the
  connection drops (and ``idle_in_transaction_session_timeout``, ``IDEMPOTENCY_LEASE_SECONDS``, bounds any
  transaction a frozen client leaves open); either way nothing was stored and the retry takes the key over;
* a request refused by validation or by a check never reaches the insert, so nothing is stored under its
  key and a corrected retry goes through;
* keys live 24 h (``IDEMPOTENCY_TTL_SECONDS``); the scheduler purges expired ones and an expired key is
  free for reuse.

Synchronous commands (catalog writes) use ``once``: an optional key, the write, the key and its stored
response in one transaction, with the same replay / 422 / 409 answers.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import psycopg
from litestar import Request, Response
from psycopg import sql
from psycopg.types.json import Jsonb

from gateway.problems import Problem, request_id_of
from shared.broker import BatchingEnqueuer, build_message
from shared.config import Settings
from shared.db import QUERIES, AsyncPool, expect_row, with_reconnect
from shared.errors import Code
from shared.registry import job_route
from shared.schemas import Accepted

MAX_KEY_LENGTH = 255
SyncOperation = Callable[[psycopg.AsyncConnection[Any]], Awaitable[msgspec.Struct]]


@dataclass(frozen=True, slots=True)
class KeyedCommand:
    scope: str
    key: str
    fingerprint: bytes
    method: str
    path: str


def keyed_command(request: Request[Any, Any, Any], body: msgspec.Struct | None) -> KeyedCommand:
    """Read and check the Idempotency-Key header; fingerprint method, path and the canonical body."""
    command = optional_keyed_command(request, body)
    if command is None:
        raise Problem(Code.IDEMPOTENCY_KEY_MISSING, "this request needs an Idempotency-Key header")
    return command


def optional_keyed_command(request: Request[Any, Any, Any], body: msgspec.Struct | None) -> KeyedCommand | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise Problem(Code.IDEMPOTENCY_KEY_INVALID, f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters")
    canonical = msgspec.json.encode(body, order="sorted") if body is not None else b""
    method, path = request.method, request.url.path
    fingerprint = hashlib.sha256(b"\n".join([method.encode(), path.encode(), canonical])).digest()
    return KeyedCommand(scope=caller_scope(request), key=key, fingerprint=fingerprint, method=method, path=path)


def caller_scope(request: Request[Any, Any, Any]) -> str:
    """Keys are scoped to the verified caller (the access guard's): one caller's key never replays another's
    answer. A public route's caller has no credential: the anonymous scope."""
    caller = request.scope["state"].get("caller")
    principal = getattr(caller, "principal", None)
    return f"caller:{principal}" if isinstance(principal, str) else "anonymous"


def job_caller(request: Request[Any, Any, Any], provider_id: Any = None) -> dict[str, Any] | None:
    """What the job row keeps of who asked for it (``jobs.caller``): its creator reads it."""
    caller = request.scope["state"].get("caller")
    return caller.job_caller(provider_id) if caller is not None else None


def _replay(row: dict[str, Any]) -> Response[bytes]:
    body = msgspec.json.encode(row["response_body"])
    headers = {"Idempotent-Replayed": "true"}
    if isinstance(row["response_body"], dict) and "status_url" in row["response_body"]:
        headers["Location"] = row["response_body"]["status_url"]
    return Response(content=body, status_code=row["response_status"], headers=headers,
                    media_type="application/json")


@dataclass(frozen=True, slots=True)
class Check:
    """A command's precondition: a named query used as an EXISTS subquery, and the problem if it fails."""

    query: str
    params: dict[str, Any]
    problem: Problem | Callable[[], Awaitable[Problem]]

    async def refusal(self) -> Problem:
        return self.problem if isinstance(self.problem, Problem) else await self.problem()


class CommandAcceptor:
    """Accept a state-changing command as a durable job, exactly once per idempotency key."""

    def __init__(self, pool: AsyncPool, enqueuer: BatchingEnqueuer, settings: Settings) -> None:
        self.pool = pool
        self.enqueuer = enqueuer
        self.settings = settings
        self._statements: dict[str, bytes] = {}

    def _statement(self, check_query: str) -> bytes:
        """accept_command with the check's query in it, composed once (as bytes: psycopg would compose a
        Composed again at every execute)."""
        if check_query not in self._statements:
            self._statements[check_query] = sql.SQL(QUERIES["accept_command"]).format(
                check=sql.SQL(QUERIES[check_query])).as_bytes(None)
        return self._statements[check_query]

    async def _record(self, command: KeyedCommand, key_params: dict[str, Any], params: dict[str, Any],
                      check: Check | None) -> Response[bytes] | None:
        """The accept statement; a replayed response if the key was already used, None if recorded now."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(self._statement(check.query if check else "no_check"), params)
            outcome = expect_row(await cur.fetchone(), "accept_command")
            if not outcome["created"]:
                if not outcome["locked"]:
                    raise Problem(Code.IDEMPOTENCY_KEY_IN_FLIGHT,
                                  "a request with this Idempotency-Key is still being processed; retry shortly",
                                  headers={"Retry-After": "1"})
                replay = await self._stored_response(conn, command)
                if replay is not None:
                    return replay
                if not outcome["checked"] and check is not None:
                    raise await check.refusal()
                raise Problem(Code.IDEMPOTENCY_KEY_IN_FLIGHT, "the Idempotency-Key changed hands; retry shortly",
                              headers={"Retry-After": "1"})
        return None

    async def once(self, command: KeyedCommand | None, operation: SyncOperation,
                   status_code: int) -> Response[Any]:
        """Run a synchronous command (a catalog write) at most once per key: the operation, the key and its
        stored response commit in one transaction. Without a key the operation simply runs."""
        async with self.pool.connection() as conn, conn.transaction():
            if command is not None:
                replay = await self._claim_key(conn, command)
                if replay is not None:
                    return replay
            result = await operation(conn)
            body = msgspec.json.encode(result)
            if command is not None:
                await conn.execute(QUERIES["store_idempotency_key"], {
                    "scope": command.scope, "key": command.key, "fingerprint": command.fingerprint,
                    "method": command.method, "path": command.path, "response_status": status_code,
                    "response_body": Jsonb(result), "ttl_seconds": self.settings.idempotency_ttl_seconds})
        return Response(content=body, status_code=status_code, media_type="application/json")

    async def _claim_key(self, conn: psycopg.AsyncConnection[Any], command: KeyedCommand) -> Response[bytes] | None:
        key_params = {"scope": command.scope, "key": command.key}
        cur = await conn.execute(QUERIES["lock_idempotency_key"], key_params)
        locked = await cur.fetchone()
        if not (locked and locked["locked"]):
            raise Problem(Code.IDEMPOTENCY_KEY_IN_FLIGHT,
                          "a request with this Idempotency-Key is still being processed; retry shortly",
                          headers={"Retry-After": "1"})
        return await self._stored_response(conn, command)

    @staticmethod
    async def _stored_response(conn: psycopg.AsyncConnection[Any], command: KeyedCommand) -> Response[bytes] | None:
        """The replay of what a key already answered; 422 if it answered a different request."""
        cur = await conn.execute(QUERIES["get_idempotency_key"], {"scope": command.scope, "key": command.key})
        stored = await cur.fetchone()
        if stored is None:
            return None
        if bytes(stored["fingerprint"]) != command.fingerprint:
            raise Problem(Code.IDEMPOTENCY_KEY_REUSED, "this Idempotency-Key was used with a different request")
        return _replay(stored)

    async def accept(
        self, request: Request[Any, Any, Any], command: KeyedCommand, *, job_type: str,
        payload: msgspec.Struct, check: Check | None = None,
    ) -> Response[Any]:
        job_id = uuid.uuid4()
        accepted = Accepted(job_id=job_id, status_url=f"/v1/jobs/{job_id}")
        key_params = {"scope": command.scope, "key": command.key}
        params = {
            **key_params, "key_scope": command.scope, **(check.params if check else {}),
            "fingerprint": command.fingerprint, "method": command.method, "path": command.path,
            "job_id": job_id, "response_body": Jsonb(accepted),
            "ttl_seconds": self.settings.idempotency_ttl_seconds, **job_route(job_type), "payload": Jsonb(payload),
            "max_attempts": self.settings.job_max_attempts, "request_id": request_id_of(request),
            "caller": Jsonb(caller) if (caller := job_caller(request)) is not None else None,
        }
        replay = await with_reconnect(lambda: self._record(command, key_params, params, check))
        if replay is not None:
            return replay
        self.enqueuer.submit(build_message(job_type, job_id))
        return Response(content=msgspec.json.encode(accepted), status_code=202,
                        headers={"Location": accepted.status_url}, media_type="application/json")
