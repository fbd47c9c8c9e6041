"""Schemathesis over the whole of the live gateway's ``/schema/openapi.json``, with all of its checks (no 5xx,
status codes, content types, headers and bodies as documented, invalid input rejected, valid input accepted,
``Allow`` of OPTIONS) and every phase but the examples (none are written): coverage, fuzzing, and the stateful
phase following the document's links; each route is called with the credential it needs, on a provider of
its own. Bounded and deterministic: a few cases per operation, one seed, one worker.

Two allowances, each for a rule no OpenAPI schema can state (README "OpenAPI conformance"):
* a schema-valid request may be refused with 422 ``REQUEST_UNPROCESSABLE`` (a date in the past, a reversed
  window, an unknown time zone) or ``IDEMPOTENCY_KEY_REUSED`` — never with 400, which means malformed;
* ``POST /v1/webhooks/stripe`` may refuse a schema-valid request with 400 ``WEBHOOK_SIGNATURE_INVALID``: its
  ``Stripe-Signature`` is a MAC over the body that no generator can forge. Signed payloads are fuzzed by
  ``tests/test_input_properties.py`` instead."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from gateway.access import Access
from tests.support import SYSTEM_TOKEN, Catalog, book_slot, make_catalog, member_session
from tests.test_access import Route, routes

pytestmark = pytest.mark.timeout(600)

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")

# Bounded and reproducible: 50 cases per operation in the fuzzing and stateful phases (the coverage phase's
# are fixed by the document), one seed, no randomness between runs: about a minute on an idle 2-core box.
# No --max-time: under it schemathesis keeps drawing cases until the time is spent (the run's length, and
# what it tests, would follow the box's load).
RUN_OPTIONS = ["--checks", "all", "--max-examples", "50", "--seed", "16", "--generation-deterministic",
               "--workers", "1", "--request-timeout", "30", "--no-color"]

# Schemathesis' defaults, plus 422: a well-formed request refused by a rule the schema cannot state.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
UNSIGNABLE = {"POST /v1/webhooks/stripe"}


WIDGET_ROUTES = {"POST /v1/bookings", "GET /v1/resources/{resource_id:uuid}/availability"}


@dataclass(frozen=True)
class Fuzzed:
    """The rows the fuzzer may act on: a provider of its own, and a second one its deletes may remove."""
    main: Catalog
    doomed: Catalog
    booking_id: str
    user_session: str  # a signed-in user with no membership: the user routes (their own sessions)


def _fuzzed(client: Any, database_url: str) -> Fuzzed:
    main, doomed = make_catalog(database_url), make_catalog(database_url)
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as db:
        owner = db.execute("SELECT s.user_id FROM sessions s JOIN memberships m USING (user_id) "
                           "WHERE m.provider_id = %s AND m.role = 'owner'", (main.provider_id,)).fetchone()
        assert owner
        db.execute("INSERT INTO memberships (user_id, provider_id, role, accepted_at) VALUES (%s, %s, 'owner', "
                   "now())", (owner["user_id"], doomed.provider_id))
        user = member_session(db, None, None)
    return Fuzzed(main, doomed, book_slot(client, main, days=250), user)


def _credential(route: Route, fuzzed: Fuzzed) -> dict[str, str]:
    """The caller a route is built for: the widget for the booking page, the provider's owner for the rest
    of a provider's routes, a signed-in user for their own sessions, the system token for the platform."""
    if Access.PUBLIC in route.access:
        return {}
    if str(route) in WIDGET_ROUTES:
        return fuzzed.main.widget
    if Access.OWNER in route.access or Access.STAFF in route.access:
        return fuzzed.main.owner
    if Access.USER in route.access:
        return {"Authorization": f"Bearer {fuzzed.user_session}"}
    return {"X-System-Token": SYSTEM_TOKEN}


def _parameters(route: Route, fuzzed: Fuzzed) -> dict[str, str]:
    """Path ids fixed to the fuzzer's own rows; what a DELETE removes is the doomed provider's."""
    own = fuzzed.doomed if route.method == "DELETE" else fuzzed.main
    values = {"provider_id": own.provider_id, "resource_id": own.resource_id, "service_id": own.service_id,
              "booking_id": fuzzed.booking_id}
    return {f"path.{name}": values[name] for name in PARAM.findall(route.path) if name in values}


def _toml(value: Any) -> str:
    return json.dumps(value)  # a JSON string or number is a TOML one


def config(fuzzed: Fuzzed) -> str:
    """schemathesis.toml: one [[operations]] entry per route, with its credential and path ids."""
    lines = ["[generation]", "allow-x00 = false", 'codec = "utf-8"', "",
             "[checks.positive_data_acceptance]", f"expected-statuses = {_toml(ACCEPTED)}", ""]
    for route in routes():
        headers, parameters = _credential(route, fuzzed), _parameters(route, fuzzed)
        unsignable = str(route) in UNSIGNABLE
        if not headers and not parameters and not unsignable:
            continue
        path = PARAM.sub(r"{\1}", route.path)
        lines += ["[[operations]]", f"include-path = {_toml(path)}", f"include-method = {_toml(route.method)}"]
        if unsignable:
            lines.append(f"checks.positive_data_acceptance.expected-statuses = {_toml([*ACCEPTED, '400'])}")
        if headers:
            lines.append("headers = { " + ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in headers.items()) + " }")
        if parameters:
            lines.append("parameters = { " + ", ".join(f"{_toml(k)} = {_toml(v)}"
                                                       for k, v in parameters.items()) + " }")
        lines.append("")
    return "\n".join(lines)


def test_schemathesis_finds_no_failure_in_the_whole_document(fleet: Any, client: Any, database_url: str,
                                                             tmp_path: Path) -> None:
    fuzzed = _fuzzed(client, database_url)
    (tmp_path / "schemathesis.toml").write_text(config(fuzzed))
    started = time.monotonic()
    run = subprocess.run([SCHEMATHESIS, "--config-file", str(tmp_path / "schemathesis.toml"), "run",
                          f"{fleet.base_url}/schema/openapi.json", *RUN_OPTIONS],
                         cwd=tmp_path, capture_output=True, text=True, timeout=500, check=False)
    output = run.stdout + run.stderr
    (tmp_path / "schemathesis-output.txt").write_text(output)
    assert run.returncode == 0, f"schemathesis failed after {time.monotonic() - started:.0f}s:\n{output[-20000:]}"
