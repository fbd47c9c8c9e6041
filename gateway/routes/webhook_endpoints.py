"""A provider's webhook endpoints (Standard Webhooks v1): create (the secret is shown once), list, delete,
rotate the secret, recover failed messages.

The signing secret is in two answers only: the creation's and the rotation's (and their replays under the
same Idempotency-Key). Every statement is scoped by the provider in the path, so another provider's
endpoint id is a 404. A URL is checked against SSRF here (``check_target``) and again before each send.
Owners of the provider (and the platform) may call every route here.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
import psycopg
from litestar import Request, Response, Router, delete, get, post
from litestar.params import Parameter

from gateway.access import OWNERS, Grant, allow, record_action
from gateway.idempotency import optional_keyed_command
from gateway.openapi_docs import KEY_OPTIONAL
from gateway.pagination import Cursor, decode_cursor, next_cursor
from gateway.problems import Problem, problem_responses
from gateway.state import GatewayState
from shared.db import QUERIES, translate_errors
from shared.errors import Code
from shared.webhooks import check_target, new_secret

AUTH = (Code.UNAUTHORIZED, Code.FORBIDDEN)
IDEMPOTENT = "Takes an optional Idempotency-Key: a repeat replays the first answer (with the same secret)."
PATH = "/providers/{provider_id:uuid}/webhook-endpoints"

Limit = Annotated[int, Parameter(ge=1, le=500)]
EventName = Annotated[str, msgspec.Meta(pattern="^[a-z_]+$", max_length=100)]


class EndpointCreate(msgspec.Struct, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
    events: Annotated[list[EventName], msgspec.Meta(max_length=100)] = []  # empty: every event


class EndpointView(msgspec.Struct):
    id: UUID
    url: str
    events: list[str]
    status: str  # active | disabled
    disabled_reason: str | None
    created_at: datetime


class CreatedEndpoint(EndpointView):
    secret: str  # shown in this answer only


class EndpointPage(msgspec.Struct):
    items: list[EndpointView]
    next_cursor: str | None


class RotatedSecret(msgspec.Struct):
    id: UUID
    secret: str  # shown in this answer only
    previous_secret_expires_at: datetime  # until then the previous secret signs too


class RecoverRequest(msgspec.Struct, forbid_unknown_fields=True):
    since: Annotated[datetime, msgspec.Meta(tz=True)]


class Recovered(msgspec.Struct):
    requeued: int


async def _one(conn: psycopg.AsyncConnection[Any], query: str, params: dict[str, Any]) -> dict[str, Any] | None:
    with translate_errors():
        cur = await conn.execute(QUERIES[query], params)
        return await cur.fetchone()


def _public(endpoint: CreatedEndpoint) -> EndpointView:
    """What the audit log keeps of an endpoint: never its secret."""
    return EndpointView(**{f: getattr(endpoint, f) for f in EndpointView.__struct_fields__})


def _found(row: dict[str, Any] | None, what: str) -> dict[str, Any]:
    if row is None:
        raise Problem(Code.NOT_FOUND, f"{what} does not exist (or is deleted)")
    return row


@post(PATH, summary="Register a webhook endpoint (its signing secret is shown once)", description=IDEMPOTENT,
      opt=KEY_OPTIONAL,
      responses=problem_responses(*AUTH, Code.VALIDATION_FAILED, Code.NOT_FOUND, Code.WEBHOOK_TARGET_REFUSED,
                                  Code.IDEMPOTENCY_KEY_INVALID, Code.IDEMPOTENCY_KEY_REUSED,
                                  Code.IDEMPOTENCY_KEY_IN_FLIGHT))
async def create_webhook_endpoint(request: Request[Any, Any, Any], state: GatewayState, grant: Grant,
                                  provider_id: UUID, data: EndpointCreate) -> Response[CreatedEndpoint]:
    command = optional_keyed_command(request, data)
    # resolving the host blocks; off the event loop
    await asyncio.to_thread(check_target, data.url, allow_private=state.settings.webhook_allow_private_targets)

    async def create(conn: psycopg.AsyncConnection[Any]) -> CreatedEndpoint:
        params = {"provider_id": provider_id, "url": data.url, "events": list(dict.fromkeys(data.events)),
                  "secret": new_secret()}
        created = msgspec.convert(_found(await _one(conn, "webhook_endpoint_insert", params),
                                         f"provider {provider_id}"), CreatedEndpoint)
        await record_action(conn, request, grant, provider_id, "webhook_endpoint.create",
                            ("webhook_endpoint", created.id), after=_public(created))
        return created

    return await state.acceptor.once(command, create, 201)


@get(PATH, summary="List a provider's webhook endpoints (without secrets)",
     responses=problem_responses(*AUTH, Code.VALIDATION_FAILED))
async def list_webhook_endpoints(state: GatewayState, provider_id: UUID, limit: Limit = 50,
                                 cursor: Cursor = None) -> EndpointPage:
    after_created_at, after_id = decode_cursor(cursor)
    params = {"provider_id": provider_id, "limit": limit + 1, "after_created_at": after_created_at,
              "after_id": after_id}
    async with state.pool.connection() as conn:
        cur = await conn.execute(QUERIES["webhook_endpoint_list"], params)
        rows = await cur.fetchall()
    return EndpointPage(items=[msgspec.convert(row, EndpointView) for row in rows[:limit]],
                        next_cursor=next_cursor(rows, limit))


@delete(PATH + "/{endpoint_id:uuid}", status_code=204, summary="Delete a webhook endpoint (nothing more is sent)",
        responses=problem_responses(*AUTH, Code.NOT_FOUND))
async def delete_webhook_endpoint(request: Request[Any, Any, Any], state: GatewayState, grant: Grant,
                                  provider_id: UUID, endpoint_id: UUID) -> None:
    async with state.pool.connection() as conn, conn.transaction():
        row = await _one(conn, "webhook_endpoint_delete", {"provider_id": provider_id, "id": endpoint_id})
        _found(row, f"webhook endpoint {endpoint_id}")
        await record_action(conn, request, grant, provider_id, "webhook_endpoint.delete",
                            ("webhook_endpoint", endpoint_id))


@post(PATH + "/{endpoint_id:uuid}/rotate-secret", status_code=200, description=IDEMPOTENT, opt=KEY_OPTIONAL,
      summary="Replace the signing secret; the previous one keeps signing for 24 hours",
      responses=problem_responses(*AUTH, Code.NOT_FOUND, Code.IDEMPOTENCY_KEY_INVALID, Code.IDEMPOTENCY_KEY_REUSED,
                                  Code.IDEMPOTENCY_KEY_IN_FLIGHT))
async def rotate_webhook_secret(request: Request[Any, Any, Any], state: GatewayState, grant: Grant,
                                provider_id: UUID, endpoint_id: UUID) -> Response[RotatedSecret]:
    async def rotate(conn: psycopg.AsyncConnection[Any]) -> RotatedSecret:
        params = {"provider_id": provider_id, "id": endpoint_id, "secret": new_secret()}
        row = await _one(conn, "webhook_endpoint_rotate_secret", params)
        rotated = msgspec.convert(_found(row, f"webhook endpoint {endpoint_id}"), RotatedSecret)
        await record_action(conn, request, grant, provider_id, "webhook_endpoint.rotate_secret",
                            ("webhook_endpoint", endpoint_id),
                            after={"previous_secret_expires_at": rotated.previous_secret_expires_at})
        return rotated

    return await state.acceptor.once(optional_keyed_command(request, None), rotate, 200)


@post(PATH + "/{endpoint_id:uuid}/recover", status_code=202,
      summary="Re-send every failed or dead message to this endpoint created since a time",
      responses=problem_responses(*AUTH, Code.VALIDATION_FAILED, Code.NOT_FOUND))
async def recover_webhook_endpoint(request: Request[Any, Any, Any], state: GatewayState, grant: Grant,
                                   provider_id: UUID, endpoint_id: UUID, data: RecoverRequest) -> Recovered:
    params = {"provider_id": provider_id, "id": endpoint_id, "since": data.since}
    async with state.pool.connection() as conn, conn.transaction():
        _found(await _one(conn, "webhook_endpoint_get", params), f"webhook endpoint {endpoint_id}")
        cur = await conn.execute(QUERIES["webhook_endpoint_recover"], params)
        requeued = len(await cur.fetchall())
        await record_action(conn, request, grant, provider_id, "webhook_endpoint.recover",
                            ("webhook_endpoint", endpoint_id), after={"since": data.since, "requeued": requeued})
    return Recovered(requeued=requeued)


router = Router(
    path="/v1", opt=allow(OWNERS), tags=["webhook endpoints"],
    route_handlers=[create_webhook_endpoint, list_webhook_endpoints, delete_webhook_endpoint, rotate_webhook_secret,
                    recover_webhook_endpoint],
)
