"""What the OpenAPI document says beyond each route's own declaration, so that it tells the whole truth:

* the problems the app itself answers on every route (``gateway.access`` refuses credentials, the limiter
  answers 429, validation answers 400, a rule no schema can state answers 422);
* the headers a route reads by hand rather than through its signature (``Idempotency-Key``,
  ``Stripe-Signature``), declared next to the route's decorator with ``documented_headers``;
* ``additionalProperties: false`` on every request body a msgspec Struct with ``forbid_unknown_fields``
  decodes (Litestar's schema leaves it open, yet the decoder refuses an unknown field), and the numeric
  bounds of zero Litestar drops (it tests ``if ge:``, so ``Meta(ge=0)`` vanished from the document);
* and, not a document but the same promise on the wire, an automatic ``OPTIONS`` whose ``Allow`` names every
  method of its path (``allow_every_method``).

``tests/test_openapi_fuzz.py`` holds the document to the app with schemathesis."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
import msgspec.inspect
from litestar import Litestar
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.openapi.spec import OpenAPI, Operation, Schema
from litestar.openapi.spec import Parameter as ParameterSpec
from litestar.routes import HTTPRoute

from gateway.access import Access, declared_access, is_automatic_options
from gateway.problems import problem_responses
from shared.errors import Code

HEADERS_OPT = "documented_headers"


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    required: bool
    description: str
    pattern: str | None = None


# 1-255 printable ASCII characters (gateway.idempotency), not starting or ending with a space: HTTP strips it.
_KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"


def idempotency_key(*, required: bool) -> dict[str, Any]:
    """The ``opt`` entry of a route that reads the Idempotency-Key header (merge it with ``allow(...)``)."""
    meaning = ("Required: a repeat with the same key replays the first answer" if required else
               "Optional: with it, a repeat replays the first answer")
    return {HEADERS_OPT: (Header("Idempotency-Key", required, meaning + " (1-255 printable characters).",
                                 _KEY_PATTERN),)}


KEY_REQUIRED = idempotency_key(required=True)
KEY_OPTIONAL = idempotency_key(required=False)


def signed_by(header: str, description: str) -> dict[str, Any]:
    """The ``opt`` entry of a route whose body is authenticated by a signature header (a webhook)."""
    return {HEADERS_OPT: (Header(header, True, description),)}


def _handlers(app: Litestar) -> list[tuple[HTTPRoute, HTTPRouteHandler]]:
    return [(route, handler) for route in app.routes if isinstance(route, HTTPRoute)
            for handler in route.route_handlers if not is_automatic_options(handler)]


def _names_an_id(route: HTTPRoute, handler: HTTPRouteHandler) -> bool:
    """A path id, or a query parameter that is one (``?provider=``): an unknown one is 404."""
    if "{" in route.path:
        return True
    hints = handler.parsed_fn_signature.parameters
    return any(name not in ("data", "state", "grant", "request") and field.is_subclass_of(UUID)
               for name, field in hints.items())


def _takes_input(handler: HTTPRouteHandler) -> bool:
    return any(name not in ("state", "grant", "request") for name in handler.parsed_fn_signature.parameters)


def document_problems(app: Litestar) -> None:
    """Every route's OpenAPI entry lists the problems the app itself can answer on it, beside its own: a
    malformed parameter or body (400), a well-formed one breaking a rule no schema states (422), the rate
    limit (429), a missing or refused credential (401, 403) on any but public routes, an unknown id (404)
    wherever the path or the query names one, and the Idempotency-Key's problems where the route reads it.
    Then the document itself is amended (headers, closed bodies, zero bounds): Litestar built it once, here,
    and serves this very object."""
    for route, handler in _handlers(app):
        codes = [Code.VALIDATION_FAILED, Code.RATE_LIMITED]
        if _takes_input(handler):
            codes.append(Code.REQUEST_UNPROCESSABLE)
        if declared_access(handler) != Access.PUBLIC:
            codes += [Code.UNAUTHORIZED, Code.FORBIDDEN]
        if _names_an_id(route, handler):
            codes.append(Code.NOT_FOUND)
        if any(h.name == "Idempotency-Key" for h in handler.opt.get(HEADERS_OPT, ())):
            codes += [Code.IDEMPOTENCY_KEY_MISSING, Code.IDEMPOTENCY_KEY_INVALID, Code.IDEMPOTENCY_KEY_REUSED,
                      Code.IDEMPOTENCY_KEY_IN_FLIGHT]
        handler.responses = {**problem_responses(*codes), **(handler.responses or {})}
    _amend(app.openapi_schema, app)


_PATH_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def _operation(openapi: OpenAPI, route: HTTPRoute, method: str) -> Operation | None:
    path = _PATH_PARAM.sub(r"{\1}", route.path)  # the document names {id}, Litestar's path {id:uuid}
    item = (openapi.paths or {}).get(path)
    return getattr(item, method.lower(), None) if item is not None else None


def _amend(openapi: OpenAPI, app: Litestar) -> None:
    for route, handler in _handlers(app):
        for method in handler.http_methods:
            operation = _operation(openapi, route, method)
            if operation is None:
                continue
            for header in handler.opt.get(HEADERS_OPT, ()):
                operation.parameters = [*(operation.parameters or []), ParameterSpec(
                    name=header.name, param_in="header", required=header.required, description=header.description,
                    schema=Schema(type="string", pattern=header.pattern) if header.pattern else Schema(type="string"))]  # type: ignore[arg-type]
    structs = _structs()
    _close_response_alternatives(openapi, structs, _request_structs(app))
    for name, schema in ((openapi.components.schemas or {}) if openapi.components else {}).items():
        struct = structs.get(schema.title or name) if isinstance(schema, Schema) else None
        if struct is None or not isinstance(schema, Schema):
            continue
        if struct.__struct_config__.forbid_unknown_fields:
            schema.additional_properties = False
        _restore_zero_bounds(schema, struct)


def _close_response_alternatives(openapi: OpenAPI, structs: dict[str, type[msgspec.Struct]],
                                 requests: set[str]) -> None:
    """An answer that is one of several Structs (``ProviderView | ProviderPublicView``) is a ``oneOf``: with
    open objects a full view also matches the smaller one, and ``oneOf`` is then false. msgspec encodes a
    Struct's own fields and nothing else, so the alternatives are closed (unless a request body also uses the
    Struct: a body that does not forbid unknown fields must stay open)."""
    components = (openapi.components.schemas or {}) if openapi.components else {}
    for item in (openapi.paths or {}).values():
        for method in ("get", "put", "post", "patch", "delete"):
            operation = getattr(item, method, None)
            for response in ((operation.responses or {}).values() if operation is not None else ()):
                for media in (getattr(response, "content", None) or {}).values():
                    schema = media.schema
                    for ref in (schema.one_of or []) if isinstance(schema, Schema) else []:
                        name = getattr(ref, "ref", "").rsplit("/", 1)[-1]
                        component = components.get(name)
                        if isinstance(component, Schema) and name in structs and name not in requests:
                            component.additional_properties = False


def _request_structs(app: Litestar) -> set[str]:
    """Names of the Structs a request body holds, at any depth."""
    names: set[str] = set()
    pending: list[msgspec.inspect.Type] = []
    for _, handler in _handlers(app):
        body = handler.parsed_fn_signature.parameters.get("data")
        if body is not None:
            try:
                pending.append(msgspec.inspect.type_info(body.annotation))
            except TypeError:  # not a type msgspec knows (a form, raw bytes)
                continue
    while pending:
        kind = pending.pop()
        if isinstance(kind, msgspec.inspect.StructType):
            if kind.cls.__name__ not in names:
                names.add(kind.cls.__name__)
                pending.extend(field.type for field in kind.fields)
        elif isinstance(kind, msgspec.inspect.UnionType):
            pending.extend(kind.types)
        elif isinstance(kind, msgspec.inspect.ListType | msgspec.inspect.SetType | msgspec.inspect.FrozenSetType):
            pending.append(kind.item_type)
        elif isinstance(kind, msgspec.inspect.DictType):
            pending.append(kind.value_type)
    return names


def _structs() -> dict[str, type[msgspec.Struct]]:
    """Every msgspec Struct by name (a component's title); a name two Structs share is left out."""
    found: dict[str, type[msgspec.Struct]] = {}
    shared: set[str] = set()
    pending: list[type[msgspec.Struct]] = [msgspec.Struct]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is msgspec.Struct:
            continue
        if cls.__name__ in found and found[cls.__name__] is not cls:
            shared.add(cls.__name__)
        found[cls.__name__] = cls
    return {name: cls for name, cls in found.items() if name not in shared}


_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusive_minimum", "lt": "exclusive_maximum"}


def _restore_zero_bounds(schema: Schema, struct: type[msgspec.Struct]) -> None:
    info = msgspec.inspect.type_info(struct)
    for field in getattr(info, "fields", ()):
        prop = (schema.properties or {}).get(field.encode_name)
        if not isinstance(prop, Schema):
            continue
        kinds = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
        for kind in kinds:
            if isinstance(kind, msgspec.inspect.IntType | msgspec.inspect.FloatType):
                for bound, attribute in _BOUNDS.items():
                    if getattr(kind, bound) == 0 and getattr(prop, attribute) is None:
                        setattr(prop, attribute, 0)


def allow_every_method(app: Litestar) -> None:
    """Litestar answers OPTIONS itself, with ``Allow`` read from the route object its handler was made for. A
    path whose methods are declared by several handlers (a GET and a POST of one resource) is rebuilt as each
    joins, but keeps the first OPTIONS handler, still bound to the first, smaller route: its ``Allow`` then
    lists only the first handler's methods. Rebind each to the route that serves it."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if not is_automatic_options(handler):
                continue
            for cell in getattr(handler.fn, "__closure__", None) or ():
                if isinstance(cell.cell_contents, HTTPRoute):
                    cell.cell_contents = route
