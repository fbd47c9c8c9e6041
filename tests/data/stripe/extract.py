"""Rebuild ``objects.json`` (this folder) from Stripe's published OpenAPI description.

    git -C <stripe/openapi clone> show <commit>:openapi/spec3.yaml > spec3.yaml
    .venv/bin/python tests/data/stripe/extract.py spec3.yaml <commit> > tests/data/stripe/objects.json

Each object the fake emits or returns becomes a trimmed JSON Schema: field names, types, ``null`` where
nullable, enums, ``required``, no other fields (``additionalProperties: false``), and every expandable
field an id (a string: nothing we receive is expanded), marked ``x-expandable``. Lists a resource carries
only when asked to (``expand[]``, e.g. ``charge.refunds`` since 2022-11-15) are left out of its
``properties`` and named in ``x-includable``. Nested objects are kept to ``DEPTH`` levels, deeper ones are
any object. The spec is the newest one whose text the fetched snapshot holds (see README.md); the fields
added or removed since, up to the API version the installed stripe SDK pins (its typed resource classes
are generated from that version's description), are applied to each object and sub-object the SDK types,
listed in ``x-since-spec``; enums are the SDK's.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from typing import Any

import stripe
import yaml

OBJECTS = {
    "payment_intent": stripe.PaymentIntent, "charge": stripe.Charge, "refund": stripe.Refund,
    "customer": stripe.Customer, "payment_method": stripe.PaymentMethod, "transfer": stripe.Transfer,
    "balance_transaction": stripe.BalanceTransaction, "event": stripe.Event, "dispute": stripe.Dispute,
    "account": stripe.Account, "account_link": stripe.AccountLink,
}
DEPTH = 3  # the object, its sub-objects, theirs


def _with_null(schema: dict[str, Any], nullable: bool) -> dict[str, Any]:
    if not nullable:
        return schema
    if "enum" in schema:
        schema = {**schema, "enum": [*schema["enum"], None]}
    if "type" in schema:
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def trim(spec: dict[str, Any], schema: dict[str, Any], depth: int, expandable: bool = False,
         cls: type | None = None) -> dict[str, Any]:
    nullable = bool(schema.get("nullable"))
    if "$ref" in schema:
        target = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        return _with_null(trim(spec, target, depth, cls=cls), nullable)
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives:
        if expandable and any(alt.get("type") == "string" for alt in alternatives):
            return _with_null({"type": "string", "x-expandable": True}, nullable)
        if len(alternatives) == 1:
            return _with_null(trim(spec, alternatives[0], depth, cls=cls), nullable)
        return _with_null({"anyOf": [trim(spec, alt, depth) for alt in alternatives]}, nullable)
    kind = schema.get("type")
    if kind == "array":
        return _with_null({"type": "array", "items": trim(spec, schema.get("items", {}), depth)}, nullable)
    if kind == "object" or "properties" in schema:
        return _with_null(_object(spec, schema, depth, cls), nullable)
    if kind is None:
        return {}
    out: dict[str, Any] = {"type": kind}
    if "enum" in schema:
        out["enum"] = list(schema["enum"])
    return _with_null(out, nullable)


def _is_list(schema: dict[str, Any]) -> bool:
    return schema.get("properties", {}).get("object", {}).get("enum") == ["list"]


def _object(spec: dict[str, Any], schema: dict[str, Any], depth: int, cls: type | None = None) -> dict[str, Any]:
    props = schema.get("properties")
    if not props:
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return {"type": "object", "additionalProperties": trim(spec, extra, depth)}
        return {"type": "object"}
    if depth <= 0:
        return {"type": "object"}
    required = list(schema.get("required", []))
    expandable = set(schema.get("x-expandableFields", []))
    includable = sorted(name for name, prop in props.items() if name not in required and _is_list(prop))
    sdk = _sdk_fields(cls) if cls is not None else {}
    out: dict[str, Any] = {
        "type": "object",
        "properties": {name: trim(spec, prop, depth - 1, expandable=name in expandable, cls=_nested(sdk.get(name)))
                       for name, prop in sorted(props.items()) if name not in includable},
        "required": required, "additionalProperties": False,
    }
    if includable:
        out["x-includable"] = includable
    if sdk:
        _overlay(out, sdk)
    return out


def _nested(hint: Any) -> type | None:
    """The SDK's class for a sub-object field (``Charge.BillingDetails``), if it is one."""
    for kind in (hint, *typing.get_args(hint)):
        if isinstance(kind, type) and issubclass(kind, stripe.StripeObject) and kind.__qualname__.count(".") >= 1:
            return kind
    return None


def _overlay(trimmed: dict[str, Any], sdk: dict[str, Any]) -> None:
    """The fields added and removed, and enums changed, between the spec and the SDK's version."""
    props = trimmed["properties"]
    removed = sorted(set(props) - set(sdk))
    added = sorted(set(sdk) - set(props) - set(trimmed.get("x-includable", [])))
    for field in removed:
        del props[field]
    trimmed["required"] = [field for field in trimmed["required"] if field not in removed]
    for field in added:
        props[field] = _from_annotation(sdk[field])
    for field, hint in sdk.items():
        literal = [a for a in (hint, *typing.get_args(hint)) if typing.get_origin(a) is typing.Literal]
        if literal and "enum" in props[field]:
            nullable = None in props[field]["enum"]
            props[field]["enum"] = [*typing.get_args(literal[0]), *([None] if nullable else [])]
    if added or removed:
        trimmed["x-since-spec"] = {"added": added, "removed": removed}


def _from_annotation(hint: Any) -> dict[str, Any]:
    """A field the SDK knows and the older spec does not: its schema, as far as the Python type says."""
    args = typing.get_args(hint)
    nullable = type(None) in args
    kinds = [a for a in args if a is not type(None)] if args and typing.get_origin(hint) in (typing.Union,
                                                                                          types.UnionType) else [hint]
    if str in kinds and any(isinstance(a, typing.ForwardRef) for a in kinds):
        return _with_null({"type": "string", "x-expandable": True}, nullable)
    base = kinds[0]
    if typing.get_origin(base) is typing.Literal:
        return _with_null({"type": "string", "enum": list(typing.get_args(base))}, nullable)
    simple = {int: "integer", bool: "boolean", str: "string", float: "number"}
    if base in simple:
        return _with_null({"type": simple[base]}, nullable)
    if typing.get_origin(base) is list:
        return _with_null({"type": "array"}, nullable)
    return _with_null({"type": "object"}, nullable)


def _sdk_fields(cls: type) -> dict[str, Any]:
    hints = dict(cls.__annotations__)  # as declared: other resources stay ForwardRefs
    return {name: hint for name, hint in hints.items()
            if not name.isupper() and typing.get_origin(hint) is not typing.ClassVar}


def main(spec_path: str, commit: str) -> None:
    with open(spec_path, encoding="utf-8") as handle:
        spec = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 (safe loader)
    schemas = spec["components"]["schemas"]
    out: dict[str, Any] = {
        "x-source": {"repository": "github.com/stripe/openapi", "commit": commit, "file": "openapi/spec3.yaml",
                     "spec_version": spec["info"]["version"], "target_api_version": stripe.api_version,
                     "overlay": f"top-level fields added/removed per stripe-python {stripe.VERSION}'s typed "
                                f"classes ({stripe.api_version})"},
        "objects": {},
    }
    for name, cls in OBJECTS.items():
        out["objects"][name] = _object(spec, schemas[name], DEPTH, cls)
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
