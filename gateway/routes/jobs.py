"""Job status: what clients poll after a 202. A job is shown to whoever asked for it (the same credential),
to the platform, and to members of the provider whose public token asked for it. The result of a succeeded
booking creation carries, for its creator only, the booking's ``customer_token``: with it the customer reads
and cancels that one booking. The token is derived from the booking id with TOKEN_SECRET, so it is never
stored; the booking keeps its hash."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import get

from gateway.access import MEMBERS, Access, Grant, allow
from gateway.problems import Problem, problem_responses
from gateway.state import GatewayState
from shared.booking import customer_token
from shared.db import QUERIES, with_reconnect
from shared.errors import Code
from shared.registry import BOOKING_CREATE
from shared.schemas import JobView


@get("/v1/jobs/{job_id:uuid}", summary="Poll a job until it is succeeded or failed",
     opt=allow(Access.PUBLIC_TOKEN | Access.CUSTOMER | MEMBERS),
     responses=problem_responses(Code.NOT_FOUND, Code.UNAUTHORIZED, Code.FORBIDDEN, Code.RATE_LIMITED))
async def get_job(state: GatewayState, grant: Grant, job_id: UUID) -> JobView:
    platform = grant.scope is None
    params = {"id": job_id, "principal": None if platform else grant.caller.principal,
              "member_of": [] if platform or grant.caller.kind != "user" else list(grant.scope or ())}

    async def read() -> dict[str, Any] | None:
        async with state.pool.connection() as conn:
            cur = await conn.execute(QUERIES["get_job"], params)
            return await cur.fetchone()

    row = await with_reconnect(read)
    if row is None:
        raise Problem(Code.NOT_FOUND, f"job {job_id} does not exist")
    own = row.pop("own")
    result = row["result"]
    if own and row["type"] == BOOKING_CREATE and isinstance(result, dict) and result.get("booking_id"):
        row["result"] = {**result, "customer_token": customer_token(state.settings.token_secret, result["booking_id"])}
    return JobView(**row)
