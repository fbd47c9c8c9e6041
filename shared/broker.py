"""Dramatiq on Redis: broker setup for workers, and enqueue-by-name for the gateway and scheduler.

Callers enqueue by queue and actor name, never by importing worker code, so each process type loads only
what it runs. The gateway's path is async: it runs Dramatiq's own ``dispatch`` Lua script (the exact
script ``RedisBroker.enqueue`` runs) through ``redis.asyncio``, so a send never blocks the event loop.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import dramatiq
import redis
import redis.asyncio
from dramatiq.brokers import redis as dramatiq_redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, ShutdownNotifications, TimeLimit

from shared.config import Settings

# Message routing: job type -> (queue, actor). One table, read by the gateway and the sweeper.
ROUTES: dict[str, tuple[str, str]] = {
    "booking.create": ("bookings", "create_booking"),
}

_HEARTBEAT_TIMEOUT_MS = 60_000
_DEAD_MESSAGE_TTL_MS = 7 * 86_400_000


def _redis_kwargs() -> dict[str, Any]:
    return {"socket_connect_timeout": 1.0, "socket_timeout": 5.0, "health_check_interval": 10}


def make_broker(settings: Settings, extra_middleware: list[dramatiq.Middleware] | None = None) -> RedisBroker:
    """The worker-side broker; Dramatiq's retry/time-limit middleware, plus ours."""
    middleware: list[dramatiq.Middleware] = [
        AgeLimit(), TimeLimit(), ShutdownNotifications(), Callbacks(), Pipelines(), Retries(),
    ]
    middleware += extra_middleware or []
    client = redis.Redis.from_url(settings.redis_url, **_redis_kwargs())
    broker = RedisBroker(client=client, namespace=settings.redis_namespace, middleware=middleware)
    return broker


def build_message(job_type: str, job_id: uuid.UUID | str) -> dramatiq.Message[Any]:
    queue, actor = ROUTES[job_type]
    return message_for(queue, actor, job_id)


def message_for(queue: str, actor: str, job_id: uuid.UUID | str) -> dramatiq.Message[Any]:
    return dramatiq.Message(
        queue_name=queue, actor_name=actor, args=(str(job_id),), kwargs={},
        options={"redis_message_id": str(uuid.uuid4())},
    )


class AsyncEnqueuer:
    """Enqueue Dramatiq messages from asyncio code over redis.asyncio with Dramatiq's own Lua script."""

    def __init__(self, settings: Settings) -> None:
        self.namespace = settings.redis_namespace
        self.client = redis.asyncio.Redis.from_url(settings.redis_url, **_redis_kwargs())
        self._dispatch = self.client.register_script(dramatiq_redis._scripts["dispatch"])
        self._sender_id = f"gateway-{uuid.uuid4()}"

    async def enqueue(self, message: dramatiq.Message[Any]) -> None:
        args = [
            "enqueue", int(time.time() * 1000), message.queue_name, self._sender_id,
            _HEARTBEAT_TIMEOUT_MS, _DEAD_MESSAGE_TTL_MS, 0, 0,
            message.options["redis_message_id"], message.encode(),
        ]
        await self._dispatch(keys=[self.namespace], args=args)

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def close(self) -> None:
        await self.client.aclose()
