"""Job status: what clients poll after a 202."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import get

from gateway.problems import Problem, problem_responses
from gateway.state import GatewayState
from shared.db import QUERIES, with_reconnect
from shared.errors import Code
from shared.schemas import JobView


@get("/v1/jobs/{job_id:uuid}", summary="Poll a job until it is succeeded or failed",
     responses=problem_responses(Code.NOT_FOUND))
async def get_job(state: GatewayState, job_id: UUID) -> JobView:
    async def read() -> dict[str, Any] | None:
        async with state.pool.connection() as conn:
            cur = await conn.execute(QUERIES["get_job"], {"id": job_id})
            return await cur.fetchone()

    row = await with_reconnect(read)
    if row is None:
        raise Problem(Code.NOT_FOUND, f"job {job_id} does not exist")
    return JobView(**row)
