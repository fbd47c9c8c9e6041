"""pgbench scripts rendered from the very named queries the gateway and workers run (sql/queries), with
each ``%(param)s`` bound to a pgbench expression, so the ceiling is provably the same SQL.

Every pgbench client counts its transactions in ``:n`` (``-D n=0`` then ``\\set n :n + 1``), so each
transaction works on a job row of its own: ``job_key = client_id * 1e6 + n`` names a uuid.
"""

from __future__ import annotations

import re
from pathlib import Path

from shared.booking import BEGIN, COMMIT, CREATE_SLOT_BOOKING_STATEMENTS
from shared.db import QUERIES
from shared.registry import BOOKING_CREATE, PAYMENT_CANCEL_INTENT, STRIPE_APPLY_EVENT, job_route

_JOB = "('00000000-0000-4000-8000-' || lpad(to_hex(((:client_id * 1000000 + :n) + {space})::bigint), 12, '0'))::uuid"
BENCH_TOKEN_ID = "00000000-0000-4000-8000-000000000b3c"  # noqa: S105 - the bench widget token's id, not a secret
_TOKEN_ID = f"'{BENCH_TOKEN_ID}'"
_TOKEN = "md5(:client_id || '-' || :n || '-{space}')::uuid"  # noqa: S105 - the claim token's pgbench expression, not a secret
_START = "(timestamptz '2030-01-01 00:00Z' + ((:client_id * 1000000 + :n) * 30 + {space}) * interval '1 minute')"
_CUSTOMER = "'{\"name\": \"Bench Customer\", \"email\": \"bench@example.com\", \"phone\": null}'::jsonb"
_PAYLOAD = ("'{\"kind\": \"slot\", \"resource_id\": \"00000000-0000-0000-0000-000000000000\", \"service_id\": "
            "\"00000000-0000-0000-0000-000000000000\", \"start_at\": \"2031-06-02T10:00:00+02:00\", \"customer\": "
            "{\"name\": \"Bench Customer\", \"email\": \"bench@example.com\", \"phone\": null}}'::jsonb")
_RESULT = ("'{\"booking_id\": \"00000000-0000-0000-0000-000000000000\", \"status\": \"pending_payment\", "
           "\"hold_expires_at\": \"2030-01-01T00:15:00Z\"}'::jsonb")
_HEADER = ["\\set r random(1, :nres)", "\\set n :n + 1"]


def render(query: str, bindings: dict[str, str]) -> str:
    def bind(match: re.Match[str]) -> str:
        return bindings[match.group(1)]

    return re.sub(r"%\((\w+)\)s", bind, QUERIES[query]) + ";"


def _job_bindings(space: int, service_id: str) -> dict[str, dict[str, str]]:
    """pgbench expressions for each parameter of the statements a booking job runs."""
    job, token = _JOB.format(space=space), _TOKEN.format(space=space)
    resource = "(SELECT resource_id FROM bench_resources WHERE n = :r)"
    cancel = job_route(PAYMENT_CANCEL_INTENT)
    return {
        "claim_job": {"id": job, "token": token, "lease_seconds": "30"},
        "insert_slot_booking": {
            "max_attempts": "5", "cancel_type": f"'{cancel['type']}'", "cancel_queue": f"'{cancel['queue']}'",
            "cancel_actor": f"'{cancel['actor']}'",
            "id": "gen_random_uuid()", "job_id": job, "actor": "'public_token'", "actor_id": _TOKEN_ID,
            "actor_role": "NULL", "actor_roles": "'{}'::jsonb",
            "customer_token_sha256": "sha256(gen_random_uuid()::text::bytea)",
            "created_by_token_id": f"{_TOKEN_ID}::uuid", "resource_id": resource,
            "service_id": f"'{service_id}'::uuid", "start_at": _START.format(space=space // 1000),
            "customer": _CUSTOMER, "default_hold_ttl_seconds": "900", "request_ttl_seconds": "NULL"},
        "finish_job_with_payment": {
            "id": job, "token": token, "result": _RESULT,
            "booking_id": "CAST(:hold_id AS uuid)", "payment_intent_id": f"('pi_{space}_' || :client_id || '_' || :n)",
            "client_secret": "'pi_secret'", "amount": "CAST(:hold_amount AS bigint)", "currency": "'EUR'",
            "customer_id": "NULL"},
    }


def _job_statements(space: int, service_id: str) -> list[str]:
    """The booking job's statements, in the worker's order (CREATE_SLOT_BOOKING_STATEMENTS), each bound to
    pgbench expressions; the hold's row is kept (``\\gset hold_``) for the payment that follows."""
    bindings = _job_bindings(space, service_id)
    lines = []
    for name in CREATE_SLOT_BOOKING_STATEMENTS:
        if name in (BEGIN, COMMIT):
            lines.append(f"{name};")
        elif name == "insert_slot_booking":
            lines.append(render(name, bindings[name])[:-1] + " \\gset hold_")
        else:
            lines.append(render(name, bindings[name]))
    return lines


def _accept_statement(space: int, service_id: str) -> str:
    check = QUERIES["check_slot_offer"]
    key = "('k' || :client_id || '-' || :n)"
    template = QUERIES["accept_command"].replace("{check}", check)
    bindings = {
        # (no literal ":" before a name: pgbench would read it as a variable)
        "key_scope": f"('caller' || chr(58) || 'public_token' || chr(58) || '{BENCH_TOKEN_ID}')", "key": key,
        "scope": "NULL",
        "fingerprint": f"sha256({key}::bytea)", "method": "'POST'",
        "path": "'/v1/bookings'", "job_id": _JOB.format(space=space),
        "response_body": "'{\"job_id\": \"00000000-0000-0000-0000-000000000000\"}'::jsonb",
        "ttl_seconds": "86400", **{k: f"'{v}'" for k, v in job_route(BOOKING_CREATE).items()},
        "payload": _PAYLOAD, "max_attempts": "5", "request_id": "'bench'",
        "caller": f"jsonb_build_object('principal', 'public_token' || chr(58) || '{BENCH_TOKEN_ID}', "
                  "'kind', 'public_token')",
        "resource_id": "(SELECT resource_id FROM bench_resources WHERE n = :r)",
        "service_id": f"'{service_id}'::uuid",
    }
    return re.sub(r"%\((\w+)\)s", lambda m: bindings[m.group(1)], template) + ";"


def _webhook_statement(space: int) -> str:
    event = "('evt_' || :client_id || '_' || :n)"
    return render("store_stripe_event", {
        "event_id": event, "event_type": "'payment_intent.succeeded'", "object_id": "'pi_bench'",
        "created": "1800000000", "handled": "true", "ignored_reason": "NULL", "job_id": _JOB.format(space=space),
        **{k: f"'{v}'" for k, v in job_route(STRIPE_APPLY_EVENT).items()},
        "max_attempts": "5", "request_id": "'bench'",
        "payload": "'{\"id\": \"evt_bench\", \"type\": \"payment_intent.succeeded\", \"data\": "
                   "{\"object\": {\"id\": \"pi_bench\", \"amount\": 2500}}}'"})


# FULL_SPACE // 1000 minutes is a whole number of days, so its slots fall on the same clock times as JOB_SPACE's
# (a 30-minute slot starting 23:50 would cross midnight and leave its opening hours).
JOB_SPACE, FULL_SPACE, WEBHOOK_SPACE = 0, 432_000_000_000, 900_000_000_000


# job.sql again, once per run of a repeated comparison (NOTIFY off/on): each run claims preseeded jobs of a space
# of its own, on slots of its own (whole days apart, between JOB_SPACE's clients' slots and FULL_SPACE's).
REPEAT_SPACES = tuple(14_400_000_000 + k * 2_880_000_000 for k in range(4))


def write_scripts(directory: Path, service_id: str) -> dict[str, Path]:
    """job.sql: the SQL a booking job commits (claim, the hold, then payment + finish).
    full.sql: all the SQL a booking costs (the gateway's accept statement, then that job).
    webhook.sql: the webhook ingress's one statement (store the event and its apply job).
    job_<k>.sql: job.sql on REPEAT_SPACES[k]."""
    directory.mkdir(parents=True, exist_ok=True)
    scripts = {
        "job": [*_HEADER, *_job_statements(JOB_SPACE, service_id)],
        "full": [*_HEADER, _accept_statement(FULL_SPACE, service_id), *_job_statements(FULL_SPACE, service_id)],
        "webhook": ["\\set n :n + 1", _webhook_statement(WEBHOOK_SPACE)],
        **{f"job_{k}": [*_HEADER, *_job_statements(space, service_id)] for k, space in enumerate(REPEAT_SPACES)},
    }
    paths = {}
    for name, lines in scripts.items():
        paths[name] = directory / f"{name}.sql"
        paths[name].write_text("\n".join(lines) + "\n")
    return paths


PRESEED_JOBS = (  # the queued job rows a job script claims, in the job space %(space)s
    "INSERT INTO jobs (id, type, queue, actor, payload) "
    "SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(%(space)s + c * 1000000 + n), 12, '0'))::uuid, "
    "'bench', 'bench', 'bench', '{}' FROM generate_series(0, %(clients)s) c, generate_series(1, %(per_client)s) n"
)
