"""The gateway's application state, typed: what the lifespan (gateway/app.py) puts there for handlers.

Handlers take ``state: GatewayState``; Litestar hands them the app's state as this class, so every
attribute below is checked by mypy where it is used.
"""

from __future__ import annotations

from litestar.datastructures import State

from gateway.idempotency import CommandAcceptor
from gateway.ratelimit import RateLimiter
from shared.broker import BatchingEnqueuer
from shared.config import Settings
from shared.db import AsyncPool


class GatewayState(State):
    settings: Settings
    pool: AsyncPool  # the primary: writes, and every read that must see them
    read_pool: AsyncPool  # DATABASE_READ_URL's replica for reads that tolerate its lag; else the primary itself
    enqueuer: BatchingEnqueuer
    acceptor: CommandAcceptor
    limiter: RateLimiter
