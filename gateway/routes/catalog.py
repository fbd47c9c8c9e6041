"""Catalog management: providers, resources, services, offerings, weekly hours and blocks. Writes are
synchronous (the catalog is not booking state) and by the provider's owners or the platform; each is
written to the owner audit log in its own transaction. Reads are for the provider's members and its public
tokens (the booking widget). Every read and write is scoped to the caller's providers: a row of another
provider is not found. Deleting soft-deletes: the row stays readable and takes no new bookings; bookings
keep their snapshots."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

import msgspec
import psycopg
from litestar import Request, Response, Router, delete, get, patch, post, put
from litestar.params import Parameter
from psycopg.types.json import Jsonb

from gateway.access import MEMBERS, OWNERS, PLATFORM, WIDGET, Grant, allow
from gateway.access import record_action as _audit
from gateway.idempotency import optional_keyed_command
from gateway.openapi_docs import KEY_OPTIONAL
from gateway.pagination import Cursor, decode_cursor, next_cursor
from gateway.problems import Problem
from gateway.state import GatewayState
from shared.catalog import (
    BlockCreate,
    BlockView,
    HoursUpdate,
    Page,
    ProviderCreate,
    ProviderPublicView,
    ProviderUpdate,
    ProviderView,
    ResourceCreate,
    ResourceUpdate,
    ResourceView,
    ServiceCreate,
    ServiceUpdate,
    ServiceView,
    is_time_zone,
    replace_hours,
)
from shared.db import QUERIES, translate_errors
from shared.errors import Code

V = TypeVar("V")
Limit = Annotated[int, Parameter(ge=1, le=500)]


async def _one(state: GatewayState, query: str, params: dict[str, Any]) -> dict[str, Any] | None:
    async with state.pool.connection() as conn:
        return await _one_on(conn, query, params)


async def _one_on(conn: psycopg.AsyncConnection[Any], query: str, params: dict[str, Any]) -> dict[str, Any] | None:
    with translate_errors():
        cur = await conn.execute(QUERIES[query], params)
        return await cur.fetchone()


async def _page(state: GatewayState, query: str, params: dict[str, Any], limit: int, cursor: str | None,
                view: type[V]) -> Page:
    after_created_at, after_id = decode_cursor(cursor)
    async with state.pool.connection() as conn:
        cur = await conn.execute(QUERIES[query], {**params, "limit": limit + 1, "after_created_at": after_created_at,
                                                  "after_id": after_id})
        rows = await cur.fetchall()
    return Page(items=[msgspec.convert(r, view) for r in rows[:limit]], next_cursor=next_cursor(rows, limit))


def _found(row: dict[str, Any] | None, view: type[V], what: str) -> V:
    if row is None:
        raise Problem(Code.NOT_FOUND, f"{what} does not exist (or is deleted)")
    return msgspec.convert(row, view)


def _zone(name: str | None) -> None:
    if name is not None and not is_time_zone(name):
        raise Problem(Code.REQUEST_UNPROCESSABLE, f"unknown time zone {name!r}",
                      errors=[{"field": "time_zone", "message": "not an IANA time zone"}])


def _policy(data: ProviderCreate | ProviderUpdate) -> Jsonb | None:
    return None if data.cancellation_policy is None else Jsonb(data.cancellation_policy)


def _policies(data: ProviderCreate | ProviderUpdate) -> dict[str, Jsonb | None]:
    """Both policies as the statements take them (jsonb; NULL: unchanged, or for requests: as instant)."""
    request = data.request_cancellation_policy
    return {"cancellation_policy": _policy(data),
            "request_cancellation_policy": None if request is None else Jsonb(request)}


# Providers ------------------------------------------------------------------------------------------

IDEMPOTENT = "Takes an optional Idempotency-Key: a repeat replays the first answer."


Req = Request[Any, Any, Any]


@post("/providers", summary="Create a provider (platform)", description=IDEMPOTENT,
      opt={**allow(PLATFORM), **KEY_OPTIONAL})
async def create_provider(request: Req, state: GatewayState, grant: Grant,
                          data: ProviderCreate) -> Response[ProviderView]:
    _zone(data.time_zone)

    async def create(conn: psycopg.AsyncConnection[Any]) -> ProviderView:
        params = {**msgspec.structs.asdict(data), **_policies(data)}
        created = _found(await _one_on(conn, "create_provider", params), ProviderView, "provider")
        await _audit(conn, request, grant, created.id, "provider.create", ("provider", created.id), after=created)
        return created

    return await state.acceptor.once(optional_keyed_command(request, data), create, 201)


@get("/providers", summary="List the providers the caller may see", opt=allow(WIDGET))
async def list_providers(state: GatewayState, grant: Grant, limit: Limit = 50, cursor: Cursor = None) -> Page:
    page = await _page(state, "list_providers", {"scope": grant.scope_param}, limit, cursor, ProviderView)
    return Page(items=[_as_seen_by(grant, p) for p in page.items], next_cursor=page.next_cursor)


@get("/providers/{provider_id:uuid}", summary="Read a provider (its money settings: owners and the platform)",
     opt=allow(WIDGET))
async def get_provider(state: GatewayState, grant: Grant, provider_id: UUID) -> ProviderView | ProviderPublicView:
    found = _found(await _one(state, "get_provider", {"id": provider_id}), ProviderView, f"provider {provider_id}")
    return _as_seen_by(grant, found)


def _as_seen_by(grant: Grant, provider: ProviderView) -> ProviderView | ProviderPublicView:
    """Owners and the platform see the whole provider; its widget and staff, no money settings or contact."""
    if grant.caller.role_in(provider.id) in ("owner", "admin", "system"):
        return provider
    return ProviderPublicView(**{f: getattr(provider, f) for f in ProviderPublicView.__struct_fields__})


@patch("/providers/{provider_id:uuid}",
       summary="Change a provider (its commission and dispute liability: the platform only)",
       opt=allow(OWNERS))
async def update_provider(request: Req, state: GatewayState, grant: Grant, provider_id: UUID,
                          data: ProviderUpdate) -> ProviderView:
    _zone(data.time_zone)
    if data.commission_bps is not None and grant.scope is not None:
        raise Problem(Code.FORBIDDEN, "the commission is set by the platform, not by the provider")
    if data.dispute_liability is not None and grant.scope is not None:
        raise Problem(Code.FORBIDDEN, "who bears disputes is set by the platform, not by the provider")
    params = {**msgspec.structs.asdict(data), **_policies(data), "id": provider_id}
    async with state.pool.connection() as conn, conn.transaction():
        before = await _one_on(conn, "get_provider", {"id": provider_id})
        after = _found(await _one_on(conn, "update_provider", params), ProviderView, f"provider {provider_id}")
        await _audit(conn, request, grant, provider_id, "provider.update", ("provider", provider_id),
                     before=before, after=after)
    return after


@delete("/providers/{provider_id:uuid}", status_code=200, summary="Soft-delete a provider", opt=allow(OWNERS))
async def delete_provider(request: Req, state: GatewayState, grant: Grant, provider_id: UUID) -> ProviderView:
    async with state.pool.connection() as conn, conn.transaction():
        deleted = _found(await _one_on(conn, "delete_provider", {"id": provider_id}), ProviderView,
                         f"provider {provider_id}")
        await _audit(conn, request, grant, provider_id, "provider.delete", ("provider", provider_id), after=deleted)
    return deleted


# Resources ------------------------------------------------------------------------------------------

async def _resource(conn: psycopg.AsyncConnection[Any], grant: Grant, resource_id: UUID) -> ResourceView:
    return _found(await _one_on(conn, "get_resource", {"id": resource_id, "scope": grant.scope_param}),
                  ResourceView, f"resource {resource_id}")


async def _read_resource(state: GatewayState, grant: Grant, resource_id: UUID) -> ResourceView:
    async with state.pool.connection() as conn:
        return await _resource(conn, grant, resource_id)


async def _change_resource(request: Req, state: GatewayState, grant: Grant, resource_id: UUID, action: str,
                           change: Any) -> ResourceView:
    """Check the resource is the caller's, change it, read it back and audit it: one transaction."""
    async with state.pool.connection() as conn, conn.transaction():
        before = await _resource(conn, grant, resource_id)
        with translate_errors():
            await change(conn)
        after = await _resource(conn, grant, resource_id)
        await _audit(conn, request, grant, before.provider_id, action, ("resource", resource_id),
                     before=before, after=after)
    return after


@post("/providers/{provider_id:uuid}/resources", summary="Create a resource (a master's time, a listing)",
      description=IDEMPOTENT, opt={**allow(OWNERS), **KEY_OPTIONAL})
async def create_resource(request: Req, state: GatewayState, grant: Grant, provider_id: UUID,
                          data: ResourceCreate) -> Response[ResourceView]:
    if (data.kind == "stay") != (data.nightly_price is not None):
        raise Problem(Code.REQUEST_UNPROCESSABLE, "a stay listing needs nightly_price; a slot resource has none",
                      errors=[{"field": "nightly_price", "message": "required for stay, absent for slot"}])
    if data.kind != "stay" and data.security_deposit is not None:
        raise _deposit_on_slot()

    async def create(conn: psycopg.AsyncConnection[Any]) -> ResourceView:
        row = await _one_on(conn, "create_resource", {**msgspec.structs.asdict(data), "provider_id": provider_id})
        created = await _resource(conn, grant, _found(row, dict, f"provider {provider_id}")["id"])
        await _audit(conn, request, grant, provider_id, "resource.create", ("resource", created.id), after=created)
        return created

    return await state.acceptor.once(optional_keyed_command(request, data), create, 201)


@get("/resources", summary="List resources", opt=allow(WIDGET))
async def list_resources(state: GatewayState, grant: Grant, provider: UUID | None = None,
                         kind: Literal["slot", "stay"] | None = None, limit: Limit = 50,
                         cursor: Cursor = None) -> Page:
    return await _page(state, "list_resources", {"provider_id": provider, "kind": kind, "scope": grant.scope_param},
                       limit, cursor, ResourceView)


@get("/resources/{resource_id:uuid}", summary="Read a resource with its services and hours", opt=allow(WIDGET))
async def get_resource(state: GatewayState, grant: Grant, resource_id: UUID) -> ResourceView:
    return await _read_resource(state, grant, resource_id)


def _deposit_on_slot() -> Problem:
    return Problem(Code.REQUEST_UNPROCESSABLE, "only a stay listing takes a security deposit",
                   errors=[{"field": "security_deposit", "message": "stays only"}])


@patch("/resources/{resource_id:uuid}", summary="Change a resource (name, price, booking mode, request TTL, deposit)",
       opt=allow(OWNERS))
async def update_resource(request: Req, state: GatewayState, grant: Grant, resource_id: UUID,
                          data: ResourceUpdate) -> ResourceView:
    async def change(conn: psycopg.AsyncConnection[Any]) -> None:
        if data.security_deposit is not None and (await _resource(conn, grant, resource_id)).kind != "stay":
            raise _deposit_on_slot()
        _found(await _one_on(conn, "update_resource", {**msgspec.structs.asdict(data), "id": resource_id}), dict,
               f"resource {resource_id}")

    return await _change_resource(request, state, grant, resource_id, "resource.update", change)


@delete("/resources/{resource_id:uuid}", status_code=200, summary="Soft-delete a resource", opt=allow(OWNERS))
async def delete_resource(request: Req, state: GatewayState, grant: Grant, resource_id: UUID) -> ResourceView:
    async def change(conn: psycopg.AsyncConnection[Any]) -> None:
        _found(await _one_on(conn, "delete_resource", {"id": resource_id}), dict, f"resource {resource_id}")

    return await _change_resource(request, state, grant, resource_id, "resource.delete", change)


@put("/resources/{resource_id:uuid}/services/{service_id:uuid}", summary="Offer a service on a resource",
     opt=allow(OWNERS))
async def offer_service(request: Req, state: GatewayState, grant: Grant, resource_id: UUID,
                        service_id: UUID) -> ResourceView:
    async def change(conn: psycopg.AsyncConnection[Any]) -> None:
        row = await _one_on(conn, "offer_live_service", {"resource_id": resource_id, "service_id": service_id})
        _found(row, dict, f"a live slot resource {resource_id} and service {service_id} of the same provider")

    return await _change_resource(request, state, grant, resource_id, "resource.offer_service", change)


@delete("/resources/{resource_id:uuid}/services/{service_id:uuid}", status_code=200,
        summary="Stop offering a service on a resource", opt=allow(OWNERS))
async def withdraw_service(request: Req, state: GatewayState, grant: Grant, resource_id: UUID,
                           service_id: UUID) -> ResourceView:
    async def change(conn: psycopg.AsyncConnection[Any]) -> None:
        row = await _one_on(conn, "withdraw_service", {"resource_id": resource_id, "service_id": service_id})
        _found(row, dict, f"the offering of service {service_id} on resource {resource_id}")

    return await _change_resource(request, state, grant, resource_id, "resource.withdraw_service", change)


@put("/resources/{resource_id:uuid}/hours", summary="Replace a resource's weekly opening hours", opt=allow(OWNERS))
async def set_hours(request: Req, state: GatewayState, grant: Grant, resource_id: UUID,
                    data: HoursUpdate) -> ResourceView:
    async def change(conn: psycopg.AsyncConnection[Any]) -> None:
        await replace_hours(conn, resource_id, data.hours)

    return await _change_resource(request, state, grant, resource_id, "resource.set_hours", change)


@post("/resources/{resource_id:uuid}/blocks", summary="Block a period (no new bookings overlap it)",
      description=IDEMPOTENT, opt={**allow(OWNERS), **KEY_OPTIONAL})
async def create_block(request: Req, state: GatewayState, grant: Grant, resource_id: UUID,
                       data: BlockCreate) -> Response[BlockView]:
    if data.end_at <= data.start_at:
        raise Problem(Code.REQUEST_UNPROCESSABLE, "end_at must be after start_at")
    await _read_resource(state, grant, resource_id)

    async def create(conn: psycopg.AsyncConnection[Any]) -> BlockView:
        resource = await _resource(conn, grant, resource_id)
        row = await _one_on(conn, "insert_resource_block", {**msgspec.structs.asdict(data), "resource_id": resource_id})
        created = _found(row, dict, "block")
        block = BlockView(id=created["id"], resource_id=resource_id, start_at=data.start_at, end_at=data.end_at,
                          reason=data.reason, created_at=created["created_at"])
        await _audit(conn, request, grant, resource.provider_id, "block.create", ("block", block.id), after=block)
        return block

    return await state.acceptor.once(optional_keyed_command(request, data), create, 201)


@get("/resources/{resource_id:uuid}/blocks", summary="List a resource's blocks", opt=allow(MEMBERS))
async def list_blocks(state: GatewayState, grant: Grant, resource_id: UUID) -> list[BlockView]:
    async with state.pool.connection() as conn:
        await _resource(conn, grant, resource_id)
        cur = await conn.execute(QUERIES["list_resource_blocks"], {"resource_id": resource_id})
        return [msgspec.convert(row, BlockView) for row in await cur.fetchall()]


@delete("/resources/{resource_id:uuid}/blocks/{block_id:uuid}", status_code=204, summary="Lift a block",
        opt=allow(OWNERS))
async def delete_block(request: Req, state: GatewayState, grant: Grant, resource_id: UUID, block_id: UUID) -> None:
    async with state.pool.connection() as conn, conn.transaction():
        resource = await _resource(conn, grant, resource_id)
        _found(await _one_on(conn, "delete_resource_block", {"id": block_id, "resource_id": resource_id}), dict,
               f"block {block_id}")
        await _audit(conn, request, grant, resource.provider_id, "block.delete", ("block", block_id))


# Services -------------------------------------------------------------------------------------------

async def _service(conn: psycopg.AsyncConnection[Any], grant: Grant, service_id: UUID) -> ServiceView:
    return _found(await _one_on(conn, "get_service", {"id": service_id, "scope": grant.scope_param}), ServiceView,
                  f"service {service_id}")


@post("/providers/{provider_id:uuid}/services", summary="Create a service (priced in the provider's currency)",
      description=IDEMPOTENT, opt={**allow(OWNERS), **KEY_OPTIONAL})
async def create_service(request: Req, state: GatewayState, grant: Grant, provider_id: UUID,
                         data: ServiceCreate) -> Response[ServiceView]:
    async def create(conn: psycopg.AsyncConnection[Any]) -> ServiceView:
        row = await _one_on(conn, "create_service", {**msgspec.structs.asdict(data), "provider_id": provider_id})
        created = _found(row, ServiceView, f"provider {provider_id}")
        await _audit(conn, request, grant, provider_id, "service.create", ("service", created.id), after=created)
        return created

    return await state.acceptor.once(optional_keyed_command(request, data), create, 201)


@get("/services", summary="List services", opt=allow(WIDGET))
async def list_services(state: GatewayState, grant: Grant, provider: UUID | None = None, limit: Limit = 50,
                        cursor: Cursor = None) -> Page:
    return await _page(state, "list_services", {"provider_id": provider, "scope": grant.scope_param}, limit, cursor,
                       ServiceView)


@get("/services/{service_id:uuid}", summary="Read a service", opt=allow(WIDGET))
async def get_service(state: GatewayState, grant: Grant, service_id: UUID) -> ServiceView:
    async with state.pool.connection() as conn:
        return await _service(conn, grant, service_id)


async def _change_service(request: Req, state: GatewayState, grant: Grant, service_id: UUID, action: str,
                          query: str, params: dict[str, Any]) -> ServiceView:
    async with state.pool.connection() as conn, conn.transaction():
        before = await _service(conn, grant, service_id)
        after = _found(await _one_on(conn, query, {**params, "id": service_id}), ServiceView, f"service {service_id}")
        await _audit(conn, request, grant, before.provider_id, action, ("service", service_id),
                     before=before, after=after)
    return after


@patch("/services/{service_id:uuid}", summary="Change a service (existing bookings keep their snapshot)",
       opt=allow(OWNERS))
async def update_service(request: Req, state: GatewayState, grant: Grant, service_id: UUID,
                         data: ServiceUpdate) -> ServiceView:
    return await _change_service(request, state, grant, service_id, "service.update", "update_service",
                                 msgspec.structs.asdict(data))


@delete("/services/{service_id:uuid}", status_code=200, summary="Soft-delete a service", opt=allow(OWNERS))
async def delete_service(request: Req, state: GatewayState, grant: Grant, service_id: UUID) -> ServiceView:
    return await _change_service(request, state, grant, service_id, "service.delete", "delete_service", {})


catalog_router = Router(
    path="/v1", tags=["catalog"],
    route_handlers=[create_provider, list_providers, get_provider, update_provider, delete_provider,
                    create_resource, list_resources, get_resource, update_resource, delete_resource,
                    offer_service, withdraw_service, set_hours, create_block, list_blocks, delete_block,
                    create_service, list_services, get_service, update_service, delete_service],
)
