"""Dramatiq on Redis: broker setup for workers, and enqueue-by-name for the gateway and scheduler.

Callers enqueue by queue and actor name, never by importing worker code, so each process type loads only
what it runs. The gateway's path is async: it runs Dramatiq's own ``dispatch`` Lua script (the exact
script ``RedisBroker.enqueue`` runs) through ``redis.asyncio``, so a send never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import dramatiq
import redis
import redis.asyncio
from dramatiq.brokers import redis as dramatiq_redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries, ShutdownNotifications, TimeLimit

from shared.config import Settings
from shared.registry import JOB_TYPES

log = logging.getLogger("totem.broker")

_HEARTBEAT_TIMEOUT_MS = 60_000
_DEAD_MESSAGE_TTL_MS = 7 * 86_400_000


def _redis_kwargs() -> dict[str, Any]:
    return {"socket_connect_timeout": 1.0, "socket_timeout": 5.0, "health_check_interval": 10}


def make_broker(settings: Settings, extra_middleware: list[dramatiq.Middleware] | None = None) -> RedisBroker:
    """The worker-side broker; Dramatiq's retry/time-limit middleware, plus ours."""
    middleware: list[dramatiq.Middleware] = [TimeLimit(), ShutdownNotifications(), Retries()]
    middleware += extra_middleware or []
    client = redis.Redis.from_url(settings.redis_url, **_redis_kwargs())
    # dramatiq's RedisBroker.__init__ carries no annotations:
    broker = RedisBroker(client=client, namespace=settings.redis_namespace, middleware=middleware)  # type: ignore[no-untyped-call]
    return broker


def build_message(job_type: str, job_id: uuid.UUID | str) -> dramatiq.Message[Any]:
    job = JOB_TYPES[job_type]
    return message_for(job.queue, job.actor, job_id)


def message_for(queue: str, actor: str, job_id: uuid.UUID | str) -> dramatiq.Message[Any]:
    return dramatiq.Message(
        queue_name=queue, actor_name=actor, args=(str(job_id),), kwargs={},
        options={"redis_message_id": str(uuid.uuid4())},
    )


class AsyncEnqueuer:
    """Enqueue Dramatiq messages from asyncio code over redis.asyncio with Dramatiq's own Lua script.

    ``submit`` never waits: messages are batched and sent in one Redis pipeline by a background task, so
    a request is answered as soon as its job row is committed. A batch that cannot be sent (Redis down) is
    dropped with a warning: its jobs are durable in Postgres and the scheduler's sweeper enqueues them.
    """

    def __init__(self, settings: Settings, max_batch: int = 256,
                 counted: Callable[[str, str, int], None] | None = None) -> None:
        """``counted(queue, outcome, n)`` is told of every message sent ("sent") or given up ("dropped"): the
        gateway's metric (kept out of this module: a worker importing prometheus_client metrics before
        Dramatiq's middleware sets up its multiprocess folder would break the pool's own metrics)."""
        self._counted = counted
        self.namespace = settings.redis_namespace
        self.client = redis.asyncio.Redis.from_url(settings.redis_url, **_redis_kwargs())
        self._dispatch = self.client.register_script(dramatiq_redis._scripts["dispatch"])
        self._sender_id = f"gateway-{uuid.uuid4()}"
        self._pending: list[dramatiq.Message[Any]] = []
        self._wakeup = asyncio.Event()
        self._max_batch = max_batch
        self._flusher: asyncio.Task[None] | None = None
        self.dropped = 0

    def _args(self, message: dramatiq.Message[Any]) -> list[Any]:
        return ["enqueue", int(time.time() * 1000), message.queue_name, self._sender_id,
                _HEARTBEAT_TIMEOUT_MS, _DEAD_MESSAGE_TTL_MS, 0, 0,
                message.options["redis_message_id"], message.encode()]

    async def enqueue(self, message: dramatiq.Message[Any]) -> None:
        """Send one message now and wait for Redis to take it."""
        await self._dispatch(keys=[self.namespace], args=self._args(message))

    def submit(self, message: dramatiq.Message[Any]) -> None:
        """Queue a message for the next batch; returns at once."""
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())
        self._pending.append(message)
        self._wakeup.set()

    async def _flush_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch:]
            try:
                async with asyncio.timeout(2.0):
                    async with self.client.pipeline(transaction=False) as pipe:
                        for message in batch:
                            await self._dispatch(keys=[self.namespace], args=self._args(message), client=pipe)
                        await pipe.execute()
                self._count(batch, "sent")
            except Exception as exc:  # noqa: BLE001 - Redis down or slow: the sweeper enqueues these jobs
                self.dropped += len(batch)
                self._count(batch, "dropped")
                log.warning("enqueue batch failed; the sweeper will enqueue these jobs",
                            extra={"jobs": len(batch), "error": type(exc).__name__})

    def _count(self, batch: list[dramatiq.Message[Any]], outcome: str) -> None:
        if self._counted is not None:
            for queue, n in collections.Counter(message.queue_name for message in batch).items():
                self._counted(queue, outcome, n)

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        await self.flush()
        await self.client.aclose()
