"""A provider's public tokens: what its booking widget (seed 000 §5) authenticates with. Created by an
owner (the token is shown once, in that answer; only its SHA-256 and a prefix to tell it apart are kept),
listed (prefix, name, origins, created, last used), revoked at once. A public token may read its provider's
catalog and availability, create bookings there and read or cancel the bookings it created; with
``allowed_origins``, a browser request from any other site (its ``Origin``) is refused."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Request, Router, delete, get, post

from gateway.access import OWNERS, Grant, allow, record_action
from gateway.problems import Problem, problem_responses
from gateway.state import GatewayState
from shared import tokens
from shared.db import QUERIES
from shared.errors import Code

PATH = "/providers/{provider_id:uuid}/public-tokens"
Origin = Annotated[str, msgspec.Meta(pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$", max_length=300)]


class PublicTokenCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    allowed_origins: Annotated[list[Origin], msgspec.Meta(max_length=50)] = []  # empty: any origin


class PublicTokenView(msgspec.Struct):
    id: UUID
    provider_id: UUID
    prefix: str | None
    name: str | None
    allowed_origins: list[str]
    created_at: datetime
    last_used_at: datetime | None


class CreatedPublicToken(PublicTokenView):
    token: str  # shown in this answer only


@post(PATH, status_code=201, summary="Create a public token for the booking widget (shown once)",
      responses=problem_responses(Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NOT_FOUND, Code.VALIDATION_FAILED))
async def create_public_token(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, provider_id: UUID,
                              data: PublicTokenCreate) -> CreatedPublicToken:
    token = tokens.new_token(tokens.PUBLIC)
    async with state.pool.connection() as conn, conn.transaction():
        if not await (await conn.execute(QUERIES["get_provider"], {"id": provider_id})).fetchone():
            raise Problem(Code.NOT_FOUND, f"provider {provider_id} does not exist")
        row = await (await conn.execute(QUERIES["insert_public_token"], {
            "digest": tokens.digest(token), "provider_id": provider_id, "prefix": token[:tokens.SHOWN_PREFIX_LENGTH],
            "name": data.name, "allowed_origins": data.allowed_origins})).fetchone()
        view = msgspec.convert(row, PublicTokenView)
        await record_action(conn, request, grant, provider_id, "public_token.create", ("public_token", view.id),
                            after=view)
    return CreatedPublicToken(**msgspec.structs.asdict(view), token=token)


@get(PATH, summary="List a provider's live public tokens (never the tokens themselves)",
     responses=problem_responses(Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NOT_FOUND))
async def list_public_tokens(state: GatewayState, provider_id: UUID) -> list[PublicTokenView]:
    async with state.pool.connection() as conn:
        rows = await (await conn.execute(QUERIES["list_public_tokens"], {"provider_id": provider_id})).fetchall()
    return [msgspec.convert(row, PublicTokenView) for row in rows]


@delete(PATH + "/{token_id:uuid}", status_code=204, summary="Revoke a public token (at once)",
        responses=problem_responses(Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NOT_FOUND))
async def revoke_public_token(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, provider_id: UUID,
                              token_id: UUID) -> None:
    async with state.pool.connection() as conn, conn.transaction():
        row = await (await conn.execute(QUERIES["revoke_public_token"], {"id": token_id,
                                                                         "provider_id": provider_id})).fetchone()
        if row is None:
            raise Problem(Code.NOT_FOUND, f"provider {provider_id} has no live public token {token_id}")
        await record_action(conn, request, grant, provider_id, "public_token.revoke", ("public_token", token_id),
                            before=msgspec.convert(row, PublicTokenView))


router = Router(path="/v1", opt=allow(OWNERS), tags=["public tokens"],
                route_handlers=[create_public_token, list_public_tokens, revoke_public_token])
