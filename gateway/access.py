"""Who may call what. Every route declares its callers next to its decorator (``opt=allow(...)``); one guard,
installed on the app so no route can opt out of it, resolves the caller once per request and refuses the
rest. A route without a declaration is refused (and a test fails on it).

Callers, by credential:
  ``X-System-Token``          system: operations; every provider. A wrong token is 403 and never anything else.
  ``Authorization: Bearer``   ``pk_`` a provider's public token (the widget), ``ct_`` a customer's token for one
                              booking, ``st_`` a signed-in user's session (owner or staff of providers,
                              or a platform admin).
  nothing                     public routes only.

A public token with ``allowed_origins`` is refused (403) from a browser page of any other site (its
``Origin``), except the gateway's own pages (the widget, in its iframe on an allowed site); an admitted
origin may read the answer (``gateway.cors``).

The guard answers 401 for no or an unknown credential, 403 for a caller the route does not admit, and 404
for a provider the caller has no part in (named in the path: whether it exists is not the caller's
business). Routes that address a row by its own id (a booking, a resource) pass ``Grant.scope`` to their
query, which finds nothing outside it: the same 404.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from gateway.cors import mark_allowed, own_origins
from gateway.problems import Problem
from gateway.ratelimit import Bucket, RateLimiter, client_ip
from shared import audit, tokens
from shared.config import Settings
from shared.db import QUERIES, AsyncPool
from shared.errors import Code

log = logging.getLogger("totem.access")


class Access(enum.Flag):
    PUBLIC = enum.auto()  # anyone, no credential
    PUBLIC_TOKEN = enum.auto()  # a provider's widget token: its own provider's catalog, bookings it made
    CUSTOMER = enum.auto()  # a customer's token: that one booking
    USER = enum.auto()  # any signed-in user, whatever their roles (their own sessions)
    STAFF = enum.auto()  # a staff member of the provider: bookings (read, complete, cancel), catalog reads
    OWNER = enum.auto()  # an owner of the provider: everything of it
    ADMIN = enum.auto()  # a platform admin: every provider
    SYSTEM = enum.auto()  # the system token: operations, every provider


PLATFORM = Access.ADMIN | Access.SYSTEM
OWNERS = Access.OWNER | PLATFORM
MEMBERS = Access.STAFF | OWNERS
WIDGET = Access.PUBLIC_TOKEN | MEMBERS  # the catalog as a booking page reads it


def allow(access: Access) -> dict[str, Any]:
    """The route's ``opt`` entry: who may call it."""
    return {"access": access}


PUBLIC_ROUTE = allow(Access.PUBLIC)


CallerKind = Literal["public_token", "customer", "user", "system"]


@dataclass(frozen=True, slots=True)
class Caller:
    kind: CallerKind
    id: str  # the public token's id, the booking's id (customer), the user's id; "system"
    provider_id: UUID | None = None  # a public token's or a customer's one provider
    memberships: dict[UUID, str] = field(default_factory=dict)  # a user's providers and role in each
    platform_admin: bool = False
    session_id: UUID | None = None
    email: str | None = None

    @property
    def principal(self) -> str:
        """Who this is, as one string: the idempotency scope, the owner of the jobs it starts."""
        return f"{self.kind}:{self.id}"

    def role_in(self, provider_id: UUID | None) -> str | None:
        if self.kind == "system":
            return "system"
        if self.platform_admin:
            return "admin"
        return self.memberships.get(provider_id) if provider_id else None

    def actor(self, provider_id: UUID | None = None) -> dict[str, Any]:
        """What an audit entry records of this caller."""
        return {"actor": self.kind, "actor_id": self.id, "actor_role": self.role_in(provider_id)}

    def job_caller(self, provider_id: UUID | None = None) -> dict[str, Any]:
        """What a job row keeps of who asked for it (``jobs.caller``): the principal reads the job; the role
        is the caller's in ``provider_id`` (or as a platform admin), for the audit trail."""
        return {"principal": self.principal, "kind": self.kind, "id": self.id,
                "provider_id": str(self.provider_id) if self.provider_id else None,
                "role": self.role_in(provider_id or self.provider_id),
                "roles": {str(p): role for p, role in self.memberships.items()}}


@dataclass(frozen=True, slots=True)
class Grant:
    """A caller admitted to a route: ``scope`` is the providers it may touch there (None: every one)."""

    caller: Caller
    scope: tuple[UUID, ...] | None

    @property
    def scope_param(self) -> list[UUID] | None:
        """``%(scope)s`` for a query: ``NULL`` (every provider) or the caller's providers."""
        return None if self.scope is None else list(self.scope)

    @property
    def only_booking(self) -> UUID | None:
        """A customer sees one booking."""
        return UUID(self.caller.id) if self.caller.kind == "customer" else None

    @property
    def created_by_token(self) -> UUID | None:
        """A public token sees the bookings it created."""
        return UUID(self.caller.id) if self.caller.kind == "public_token" else None

    def covers(self, provider_id: UUID) -> bool:
        return self.scope is None or provider_id in self.scope

    def booking_filter(self) -> dict[str, Any]:
        """The parameters every booking query takes to stay inside this grant."""
        return {"scope": self.scope_param, "only_booking": self.only_booking,
                "created_by_token": self.created_by_token}


def grant_for(caller: Caller, declared: Access) -> Grant | None:
    """What ``caller`` may touch on a route open to ``declared``; None when the route does not admit it."""
    if caller.kind == "system":
        return Grant(caller, None) if Access.SYSTEM in declared else None
    if caller.kind == "public_token":
        return Grant(caller, (caller.provider_id,)) if Access.PUBLIC_TOKEN in declared and caller.provider_id else None
    if caller.kind == "customer":
        return Grant(caller, (caller.provider_id,)) if Access.CUSTOMER in declared and caller.provider_id else None
    if caller.platform_admin and Access.ADMIN in declared:
        return Grant(caller, None)
    roles = {role for role, flag in (("owner", Access.OWNER), ("staff", Access.STAFF)) if flag in declared}
    providers = tuple(p for p, role in caller.memberships.items() if role in roles or (role == "owner" and roles))
    if providers:
        return Grant(caller, providers)
    if Access.USER in declared:
        return Grant(caller, ())
    return None


def is_automatic_options(handler: BaseRouteHandler) -> bool:
    """Litestar adds an OPTIONS handler to every path; this project declares none of its own."""
    return getattr(handler, "http_methods", None) == {"OPTIONS"}


def declared_access(handler: BaseRouteHandler) -> Access | None:
    value = handler.opt.get("access")
    return value if isinstance(value, Access) else None


async def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The app's one guard (see the module's docstring). Stores the Grant for the handler (``grant``)."""
    if is_automatic_options(handler):
        return  # Litestar's own OPTIONS answer (the allowed methods); a CORS preflight carries no credential
    declared = declared_access(handler)
    if declared is None:
        raise Problem(Code.FORBIDDEN, "this route declares no access")
    if Access.PUBLIC in declared:
        return  # no credential is looked at: a stale one must not stop a sign-in, a bad one costs no lookup
    state = connection.app.state
    settings, limiter = state.settings, state.limiter
    widget_call = connection.headers.get("authorization", "").partition(" ")[2].strip().startswith(WIDGET_PREFIXES)
    ip = ip_bucket(request_ip(connection, settings)) if widget_call else ""
    if widget_call:
        _refuse_if_blocked(ip)  # an address over its limit costs no lookup (and no Redis call) until it may retry
    try:
        caller = await resolve_caller(connection, settings, state.pool)
    except Problem:
        if widget_call:  # a wrong token still spends the address's budget
            await _admit(connection, limiter, [_ip_limit(settings, ip)])
        raise
    if caller is None:
        raise Problem(Code.UNAUTHORIZED, "this endpoint needs a credential: Authorization: Bearer <token>")
    grant = grant_for(caller, declared)
    if grant is None:
        raise Problem(Code.FORBIDDEN, "this credential may not call this endpoint")
    provider_id = connection.path_params.get("provider_id")
    if isinstance(provider_id, UUID) and not grant.covers(provider_id):
        raise Problem(Code.NOT_FOUND, f"provider {provider_id} does not exist")
    if caller.kind in ("public_token", "customer"):  # one atomic check: the address, and the widget's token
        buckets = [_ip_limit(settings, ip or ip_bucket(request_ip(connection, settings)))]
        if caller.kind == "public_token":
            buckets.append(Bucket("token", caller.id, settings.rate_limit_token_rps, settings.rate_limit_token_burst))
        await _admit(connection, limiter, buckets)
    connection.scope["state"]["grant"] = grant


WIDGET_PREFIXES = (tokens.PUBLIC, tokens.CUSTOMER)
_blocked: dict[str, float] = {}  # this process: IP bucket -> monotonic time until which it was refused
_BLOCKED_MAX = 10_000


def _ip_limit(settings: Settings, ip: str) -> Bucket:
    return Bucket("ip", ip, settings.rate_limit_ip_rps, settings.rate_limit_ip_burst)


def _refuse_if_blocked(ip: str) -> None:
    until = _blocked.get(ip)
    if until is None:
        return
    left = until - time.monotonic()
    if left <= 0:
        del _blocked[ip]
        return
    raise Problem(Code.RATE_LIMITED, f"too many requests; retry in {left:.1f} s",
                  headers={"Retry-After": str(max(1, math.ceil(left)))})


async def _admit(connection: ASGIConnection[Any, Any, Any, Any], limiter: RateLimiter, buckets: list[Bucket]) -> None:
    """Charge the buckets (all or none); over one: 429. An address refused is remembered by this process
    until it may retry. The answer carries the verdict's RateLimit headers."""
    verdict = await limiter.admit(buckets)
    connection.scope["state"]["rate_limit"] = verdict
    if verdict.admitted:
        return
    if "ip" in verdict.refused:
        if len(_blocked) >= _BLOCKED_MAX:
            _blocked.clear()
        _blocked[next(b.key for b in buckets if b.name == "ip")] = time.monotonic() + verdict.retry_after
    raise Problem(Code.RATE_LIMITED, f"too many requests; retry in {verdict.retry_after:.1f} s",
                  headers=verdict.headers())


def ip_bucket(ip: str) -> str:
    """What an IP limit is keyed by: the address, or for IPv6 its /64 (one subscriber's block: rotating
    addresses inside it is free)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    return str(ipaddress.ip_network(f"{address}/64", strict=False)) if address.version == 6 else str(address)


def request_ip(connection: ASGIConnection[Any, Any, Any, Any], settings: Settings) -> str:
    """The client's address: the peer's, or behind TRUSTED_PROXIES the X-Forwarded-For chain read right to
    left (every header line of it, in order: a proxy may add its own line after the client's forged one)."""
    peer = connection.scope.get("client")
    forwarded = ", ".join(connection.headers.getall("x-forwarded-for", [])) or None
    return client_ip(peer[0] if peer else None, forwarded, settings.trusted_networks)


def current_grant(request: Request[Any, Any, Any]) -> Grant:
    """The dependency handlers take as ``grant``; a public route called without a credential has none."""
    grant = request.scope["state"].get("grant")
    if not isinstance(grant, Grant):
        raise Problem(Code.UNAUTHORIZED, "this endpoint needs a credential: Authorization: Bearer <token>")
    return grant


async def resolve_caller(connection: ASGIConnection[Any, Any, Any, Any], settings: Settings,
                         pool: AsyncPool) -> Caller | None:
    """The caller by its credential, looked up once (cached on the request); None when there is none."""
    cached = connection.scope["state"].get("caller")
    if isinstance(cached, Caller):
        return cached
    caller = await _lookup(connection, settings, pool)
    connection.scope["state"]["caller"] = caller
    return caller


async def _lookup(connection: ASGIConnection[Any, Any, Any, Any], settings: Settings,
                  pool: AsyncPool) -> Caller | None:
    system = connection.headers.get("x-system-token")
    if system is not None:
        if not tokens.constant_time_equal(system, settings.system_token):
            raise Problem(Code.FORBIDDEN, "the X-System-Token is not valid")
        return Caller(kind="system", id="system")
    authorization = connection.headers.get("authorization")
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(tokens.PREFIXES) or len(token) > 200:
        raise Problem(Code.UNAUTHORIZED, "the Authorization header must be `Bearer <token>`")
    digest = tokens.digest(token)
    async with pool.connection() as conn:
        if token.startswith(tokens.PUBLIC):
            row = await (await conn.execute(QUERIES["use_public_token"], {"digest": digest})).fetchone()
            if row is not None:
                origin = connection.headers.get("origin")
                if origin is not None:
                    if row["allowed_origins"] and origin not in row["allowed_origins"] \
                            and origin not in own_origins(connection, settings.links_base):
                        raise Problem(Code.FORBIDDEN, "this public token may not be used from this origin")
                    mark_allowed(connection, origin)
                return Caller(kind="public_token", id=str(row["id"]), provider_id=row["provider_id"])
        elif token.startswith(tokens.CUSTOMER):
            row = await (await conn.execute(QUERIES["booking_of_customer_token"], {"digest": digest})).fetchone()
            if row is not None:
                return Caller(kind="customer", id=str(row["id"]), provider_id=row["provider_id"])
        elif token.startswith(tokens.SESSION):
            row = await (await conn.execute(QUERIES["use_session"], {
                "digest": digest, "idle_seconds": settings.session_idle_seconds})).fetchone()
            if row is not None:
                return Caller(kind="user", id=str(row["user_id"]), session_id=row["session_id"],
                              email=row["email"], platform_admin=row["platform_role"] == "admin",
                              memberships={UUID(k): v for k, v in (row["memberships"] or {}).items()})
    raise Problem(Code.UNAUTHORIZED, "the token is unknown, revoked or expired")


async def record_action(conn: Any, request: Request[Any, Any, Any], grant: Grant, provider_id: Any, action: str,
                        target: tuple[str, Any], *, before: Any = None, after: Any = None) -> None:
    """The owner audit row of an action by this request's caller, on ``conn`` (the action's transaction):
    who (verified), role, what, target, before and after (structs or dicts), request id and client IP."""
    await audit.record_async(conn, audit.params(
        grant.caller.actor(provider_id), provider_id, action, target[0], target[1],
        before=None if before is None else msgspec.to_builtins(before),
        after=None if after is None else msgspec.to_builtins(after),
        request_id=request.scope["state"].get("request_id"), ip=request_ip(request, request.app.state.settings)))
