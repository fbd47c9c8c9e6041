"""Stripe objects checked against Stripe's published OpenAPI description (``tests/data/stripe/objects.json``,
trimmed from github.com/stripe/openapi; its README says which commit and version).

``problems(obj)`` lists every way one object (or a list of them, or an event with the object inside) differs
from its published schema: a field Stripe does not have, a required field missing, a wrong type or enum
value, an expandable field that is not an id (nothing Stripe sends in a webhook, nor answers unasked, is
expanded), a list sent that Stripe includes only when asked (``x-includable``, e.g. ``charge.refunds``),
an object type with no schema here, an event in another API version. Empty: it conforms.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from shared.stripe_api import STRIPE_API_VERSION

DATA = Path(__file__).parent / "data" / "stripe" / "objects.json"


@cache
def published() -> dict[str, Any]:
    return json.loads(DATA.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@cache
def _validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(published()["objects"][kind])


def problems(obj: Any, where: str = "") -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where or 'answer'}: not a Stripe object: {obj!r:.80}"]
    kind = obj.get("object")
    where = where or str(kind)
    if kind == "list":
        return [p for i, item in enumerate(obj.get("data", [])) for p in problems(item, f"{where}.data[{i}]")]
    if kind not in published()["objects"]:
        return [f"{where}: no published schema here for object type {kind!r} (add it to extract.py's OBJECTS)"]
    found = [f"{where}.{'.'.join(map(str, error.absolute_path))}: {error.message}"
             for error in _validator(kind).iter_errors(obj)]
    schema = published()["objects"][kind]
    found += [f"{where}.{name}: sent unasked; Stripe includes it only when expanded"
              for name in schema.get("x-includable", []) if name in obj]
    if kind == "event":
        if obj.get("api_version") != STRIPE_API_VERSION:
            found.append(f"{where}: api_version {obj.get('api_version')!r}, not {STRIPE_API_VERSION}")
        found += problems(obj.get("data", {}).get("object"), f"{where}[{obj.get('type')}].data.object")
    return found
