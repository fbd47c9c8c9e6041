"""Catalog management (owners; until owner sessions exist, the system token): providers, resources,
services, offerings, weekly hours and blocks. Writes are synchronous: the catalog is not booking state.
Deleting soft-deletes: the row stays readable and takes no new bookings; bookings keep their snapshots."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

import msgspec
import psycopg
from litestar import Request, Response, Router, delete, get, patch, post, put
from litestar.params import Parameter
from psycopg.types.json import Jsonb

from gateway.auth import require_system_token
from gateway.idempotency import optional_keyed_command
from gateway.pagination import decode_cursor, next_cursor
from gateway.problems import Problem
from gateway.state import GatewayState
from shared.catalog import (
    BlockCreate,
    BlockView,
    HoursUpdate,
    Page,
    ProviderCreate,
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
        raise Problem(Code.VALIDATION_FAILED, f"unknown time zone {name!r}",
                      errors=[{"field": "time_zone", "message": "not an IANA time zone"}])


def _policy(data: ProviderCreate | ProviderUpdate) -> Jsonb | None:
    return None if data.cancellation_policy is None else Jsonb(data.cancellation_policy)


# Providers ------------------------------------------------------------------------------------------

IDEMPOTENT = "Takes an optional Idempotency-Key: a repeat replays the first answer."


@post("/providers", summary="Create a provider", description=IDEMPOTENT)
async def create_provider(request: Request[Any, Any, Any], state: GatewayState,
                          data: ProviderCreate) -> Response[ProviderView]:
    _zone(data.time_zone)

    async def create(conn: psycopg.AsyncConnection[Any]) -> ProviderView:
        params = {**msgspec.structs.asdict(data), "cancellation_policy": _policy(data)}
        return _found(await _one_on(conn, "create_provider", params), ProviderView, "provider")

    return await state.acceptor.once(optional_keyed_command(request, data), create, 201)


@get("/providers", summary="List providers")
async def list_providers(state: GatewayState, limit: Limit = 50, cursor: str | None = None) -> Page:
    return await _page(state, "list_providers", {}, limit, cursor, ProviderView)


@get("/providers/{provider_id:uuid}", summary="Read a provider")
async def get_provider(state: GatewayState, provider_id: UUID) -> ProviderView:
    return _found(await _one(state, "get_provider", {"id": provider_id}), ProviderView, f"provider {provider_id}")


@patch("/providers/{provider_id:uuid}", summary="Change a provider")
async def update_provider(state: GatewayState, provider_id: UUID, data: ProviderUpdate) -> ProviderView:
    _zone(data.time_zone)
    params = {**msgspec.structs.asdict(data), "cancellation_policy": _policy(data), "id": provider_id}
    return _found(await _one(state, "update_provider", params), ProviderView, f"provider {provider_id}")


@delete("/providers/{provider_id:uuid}", status_code=200, summary="Soft-delete a provider")
async def delete_provider(state: GatewayState, provider_id: UUID) -> ProviderView:
    return _found(await _one(state, "delete_provider", {"id": provider_id}), ProviderView, f"provider {provider_id}")


# Resources ------------------------------------------------------------------------------------------

async def _resource(state: GatewayState, resource_id: UUID) -> ResourceView:
    return _found(await _one(state, "get_resource", {"id": resource_id}), ResourceView, f"resource {resource_id}")


@post("/providers/{provider_id:uuid}/resources", summary="Create a resource (a master's time, a listing)",
      description=IDEMPOTENT)
async def create_resource(request: Request[Any, Any, Any], state: GatewayState, provider_id: UUID,
                          data: ResourceCreate) -> Response[ResourceView]:
    if (data.kind == "stay") != (data.nightly_price is not None):
        raise Problem(Code.VALIDATION_FAILED, "a stay listing needs nightly_price; a slot resource has none",
                      errors=[{"field": "nightly_price", "message": "required for stay, absent for slot"}])

    async def create(conn: psycopg.AsyncConnection[Any]) -> ResourceView:
        row = await _one_on(conn, "create_resource", {**msgspec.structs.asdict(data), "provider_id": provider_id})
        created = _found(row, dict, f"provider {provider_id}")
        return _found(await _one_on(conn, "get_resource", {"id": created["id"]}), ResourceView, "resource")

    return await state.acceptor.once(optional_keyed_command(request, data), create, 201)


@get("/resources", summary="List resources")
async def list_resources(state: GatewayState, provider: UUID | None = None, kind: Literal["slot", "stay"] | None = None,
                         limit: Limit = 50, cursor: str | None = None) -> Page:
    return await _page(state, "list_resources", {"provider_id": provider, "kind": kind}, limit, cursor, ResourceView)


@get("/resources/{resource_id:uuid}", summary="Read a resource with its services and hours")
async def get_resource(state: GatewayState, resource_id: UUID) -> ResourceView:
    return await _resource(state, resource_id)


@patch("/resources/{resource_id:uuid}", summary="Change a resource")
async def update_resource(state: GatewayState, resource_id: UUID, data: ResourceUpdate) -> ResourceView:
    _found(await _one(state, "update_resource", {**msgspec.structs.asdict(data), "id": resource_id}), dict,
           f"resource {resource_id}")
    return await _resource(state, resource_id)


@delete("/resources/{resource_id:uuid}", status_code=200, summary="Soft-delete a resource")
async def delete_resource(state: GatewayState, resource_id: UUID) -> ResourceView:
    _found(await _one(state, "delete_resource", {"id": resource_id}), dict, f"resource {resource_id}")
    return await _resource(state, resource_id)


@put("/resources/{resource_id:uuid}/services/{service_id:uuid}", summary="Offer a service on a resource")
async def offer_service(state: GatewayState, resource_id: UUID, service_id: UUID) -> ResourceView:
    row = await _one(state, "offer_live_service", {"resource_id": resource_id, "service_id": service_id})
    _found(row, dict, f"a live slot resource {resource_id} and service {service_id} of the same provider")
    return await _resource(state, resource_id)


@delete("/resources/{resource_id:uuid}/services/{service_id:uuid}", status_code=200,
        summary="Stop offering a service on a resource")
async def withdraw_service(state: GatewayState, resource_id: UUID, service_id: UUID) -> ResourceView:
    row = await _one(state, "withdraw_service", {"resource_id": resource_id, "service_id": service_id})
    _found(row, dict, f"the offering of service {service_id} on resource {resource_id}")
    return await _resource(state, resource_id)


@put("/resources/{resource_id:uuid}/hours", summary="Replace a resource's weekly opening hours")
async def set_hours(state: GatewayState, resource_id: UUID, data: HoursUpdate) -> ResourceView:
    await _resource(state, resource_id)
    async with state.pool.connection() as conn:
        with translate_errors():
            await replace_hours(conn, resource_id, data.hours)
    return await _resource(state, resource_id)


@post("/resources/{resource_id:uuid}/blocks", summary="Block a period (no new bookings overlap it)",
      description=IDEMPOTENT)
async def create_block(request: Request[Any, Any, Any], state: GatewayState, resource_id: UUID,
                       data: BlockCreate) -> Response[BlockView]:
    if data.end_at <= data.start_at:
        raise Problem(Code.VALIDATION_FAILED, "end_at must be after start_at")
    await _resource(state, resource_id)

    async def create(conn: psycopg.AsyncConnection[Any]) -> BlockView:
        row = await _one_on(conn, "insert_resource_block", {**msgspec.structs.asdict(data), "resource_id": resource_id})
        created = _found(row, dict, "block")
        return BlockView(id=created["id"], resource_id=resource_id, start_at=data.start_at, end_at=data.end_at,
                         reason=data.reason, created_at=created["created_at"])

    return await state.acceptor.once(optional_keyed_command(request, data), create, 201)


@get("/resources/{resource_id:uuid}/blocks", summary="List a resource's blocks")
async def list_blocks(state: GatewayState, resource_id: UUID) -> list[BlockView]:
    async with state.pool.connection() as conn:
        cur = await conn.execute(QUERIES["list_resource_blocks"], {"resource_id": resource_id})
        return [msgspec.convert(row, BlockView) for row in await cur.fetchall()]


@delete("/resources/{resource_id:uuid}/blocks/{block_id:uuid}", status_code=204, summary="Lift a block")
async def delete_block(state: GatewayState, resource_id: UUID, block_id: UUID) -> None:
    _found(await _one(state, "delete_resource_block", {"id": block_id, "resource_id": resource_id}), dict,
           f"block {block_id}")


# Services -------------------------------------------------------------------------------------------

@post("/providers/{provider_id:uuid}/services", summary="Create a service (priced in the provider's currency)",
      description=IDEMPOTENT)
async def create_service(request: Request[Any, Any, Any], state: GatewayState, provider_id: UUID,
                         data: ServiceCreate) -> Response[ServiceView]:
    async def create(conn: psycopg.AsyncConnection[Any]) -> ServiceView:
        row = await _one_on(conn, "create_service", {**msgspec.structs.asdict(data), "provider_id": provider_id})
        return _found(row, ServiceView, f"provider {provider_id}")

    return await state.acceptor.once(optional_keyed_command(request, data), create, 201)


@get("/services", summary="List services")
async def list_services(state: GatewayState, provider: UUID | None = None, limit: Limit = 50,
                        cursor: str | None = None) -> Page:
    return await _page(state, "list_services", {"provider_id": provider}, limit, cursor, ServiceView)


@get("/services/{service_id:uuid}", summary="Read a service")
async def get_service(state: GatewayState, service_id: UUID) -> ServiceView:
    return _found(await _one(state, "get_service", {"id": service_id}), ServiceView, f"service {service_id}")


@patch("/services/{service_id:uuid}", summary="Change a service (existing bookings keep their snapshot)")
async def update_service(state: GatewayState, service_id: UUID, data: ServiceUpdate) -> ServiceView:
    row = await _one(state, "update_service", {**msgspec.structs.asdict(data), "id": service_id})
    return _found(row, ServiceView, f"service {service_id}")


@delete("/services/{service_id:uuid}", status_code=200, summary="Soft-delete a service")
async def delete_service(state: GatewayState, service_id: UUID) -> ServiceView:
    return _found(await _one(state, "delete_service", {"id": service_id}), ServiceView, f"service {service_id}")


catalog_router = Router(
    path="/v1", guards=[require_system_token], tags=["catalog"],
    route_handlers=[create_provider, list_providers, get_provider, update_provider, delete_provider,
                    create_resource, list_resources, get_resource, update_resource, delete_resource,
                    offer_service, withdraw_service, set_hours, create_block, list_blocks, delete_block,
                    create_service, list_services, get_service, update_service, delete_service],
)
