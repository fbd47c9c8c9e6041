"""Dramatiq on Redis: broker setup for workers, and enqueue-by-name for the gateway and scheduler.

Callers enqueue by queue and actor name, never by importing worker code, so each process type loads only
what it runs. The gateway's path is async: it runs Dramatiq's own ``dispatch`` Lua script (the exact
script ``RedisBroker.enqueue`` runs) through ``redis.asyncio``, so a send never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
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


def make_broker(settings: Settings, extra_middleware: list[dramatiq.Middleware] | None = None) -> dramatiq.Broker:
    """The worker-side broker (Redis, or RabbitMQ when BROKER_URL is amqp://); Dramatiq's retry/time-limit
    middleware, plus ours."""
    middleware: list[dramatiq.Middleware] = [TimeLimit(), ShutdownNotifications(), Retries()]
    middleware += extra_middleware or []
    if settings.uses_rabbitmq:
        return make_rabbitmq_broker(str(settings.broker_url), middleware)
    client = redis.Redis.from_url(settings.redis_url, **_redis_kwargs())
    # dramatiq's RedisBroker.__init__ carries no annotations:
    broker = RedisBroker(client=client, namespace=settings.redis_namespace, middleware=middleware)  # type: ignore[no-untyped-call]
    return broker


def make_rabbitmq_broker(url: str, middleware: list[dramatiq.Middleware]) -> dramatiq.Broker:
    """Dramatiq's RabbitMQ broker: durable queues, each with its dead-letter queue (``<queue>.XQ``, where
    Dramatiq puts a message whose retries ran out), persistent messages, publisher confirms. The queues are
    quorum queues (replicated) where the server has them with per-message TTL, which Dramatiq's delayed
    retries use: RabbitMQ 3.10 and later."""
    from dramatiq.brokers.rabbitmq import RabbitmqBroker  # pika is imported only when RabbitMQ is used

    class QuorumRabbitmqBroker(RabbitmqBroker):
        def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
            arguments: dict[str, Any] = super()._build_queue_arguments(queue_name)  # type: ignore[no-untyped-call]
            if _supports_quorum(self.connection):
                arguments["x-queue-type"] = "quorum"
            return arguments

    return QuorumRabbitmqBroker(url=url, middleware=middleware, confirm_delivery=True)


def _supports_quorum(connection: Any) -> bool:
    """Whether the RabbitMQ server behind a pika connection has quorum queues with per-message TTL."""
    properties = getattr(getattr(connection, "_impl", None), "server_properties", None) or {}
    version = properties.get("version", b"0")
    text = version.decode() if isinstance(version, bytes) else str(version)
    try:
        major, minor = (int(part) for part in text.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (3, 10)  # 3.8 has quorum queues; per-message TTL on them (delays) needs 3.10


def queue_depth(broker: dramatiq.Broker, namespace: str, queue: str) -> int:
    """Messages waiting on ``queue`` (ready to run), whichever broker."""
    if isinstance(broker, RedisBroker):
        return int(broker.client.llen(f"{namespace}:{queue}"))
    ready, _delayed, _dead = broker.get_queue_message_counts(queue)  # type: ignore[attr-defined]
    return int(ready)


def build_message(job_type: str, job_id: uuid.UUID | str) -> dramatiq.Message[Any]:
    job = JOB_TYPES[job_type]
    return message_for(job.queue, job.actor, job_id)


def message_for(queue: str, actor: str, job_id: uuid.UUID | str) -> dramatiq.Message[Any]:
    return dramatiq.Message(
        queue_name=queue, actor_name=actor, args=(str(job_id),), kwargs={},
        options={"redis_message_id": str(uuid.uuid4())},
    )


class BatchingEnqueuer:
    """Enqueue Dramatiq messages from asyncio code without waiting: ``submit`` queues a message, and a
    background task sends what has gathered in batches (``_send``), so a request is answered as soon as its
    job row is committed. A batch that cannot be sent (the broker down) is dropped with a warning: its jobs
    are durable in Postgres and the scheduler's sweeper enqueues them.

    ``counted(queue, outcome, n)`` is told of every message sent ("sent") or given up ("dropped"): the
    gateway's metric (kept out of this module: a worker importing prometheus_client metrics before Dramatiq's
    middleware sets up its multiprocess folder would break the pool's own metrics)."""

    def __init__(self, max_batch: int = 256, counted: Callable[[str, str, int], None] | None = None) -> None:
        self._counted = counted
        self._pending: list[dramatiq.Message[Any]] = []
        self._wakeup = asyncio.Event()
        self._max_batch = max_batch
        self._flusher: asyncio.Task[None] | None = None
        self.dropped = 0

    async def _send(self, batch: list[dramatiq.Message[Any]]) -> None:
        raise NotImplementedError

    async def ping(self) -> bool:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

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
                async with asyncio.timeout(5.0):
                    await self._send(batch)
                self._count(batch, "sent")
            except Exception as exc:  # noqa: BLE001 - the broker down or slow: the sweeper enqueues these jobs
                self.dropped += len(batch)
                self._count(batch, "dropped")
                log.warning("enqueue batch failed; the sweeper will enqueue these jobs",
                            extra={"jobs": len(batch), "error": type(exc).__name__})

    def _count(self, batch: list[dramatiq.Message[Any]], outcome: str) -> None:
        if self._counted is not None:
            for queue, n in collections.Counter(message.queue_name for message in batch).items():
                self._counted(queue, outcome, n)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        await self.flush()
        await self._close()


class AsyncEnqueuer(BatchingEnqueuer):
    """Over redis.asyncio with Dramatiq's own Lua script, a batch in one Redis pipeline."""

    def __init__(self, settings: Settings, max_batch: int = 256,
                 counted: Callable[[str, str, int], None] | None = None) -> None:
        super().__init__(max_batch, counted)
        self.namespace = settings.redis_namespace
        self.client = redis.asyncio.Redis.from_url(settings.redis_url, **_redis_kwargs())
        self._dispatch = self.client.register_script(dramatiq_redis._scripts["dispatch"])
        self._sender_id = f"gateway-{uuid.uuid4()}"

    def _args(self, message: dramatiq.Message[Any]) -> list[Any]:
        return ["enqueue", int(time.time() * 1000), message.queue_name, self._sender_id,
                _HEARTBEAT_TIMEOUT_MS, _DEAD_MESSAGE_TTL_MS, 0, 0,
                message.options["redis_message_id"], message.encode()]

    async def enqueue(self, message: dramatiq.Message[Any]) -> None:
        """Send one message now and wait for Redis to take it."""
        await self._dispatch(keys=[self.namespace], args=self._args(message))

    async def _send(self, batch: list[dramatiq.Message[Any]]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for message in batch:
                await self._dispatch(keys=[self.namespace], args=self._args(message), client=pipe)
            await pipe.execute()

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def _close(self) -> None:
        await self.client.aclose()


class AmqpEnqueuer(BatchingEnqueuer):
    """Over RabbitMQ with Dramatiq's own broker (pika, blocking) on one thread of its own: a batch is
    published there, each message confirmed by the server (publisher confirms) before it counts as sent."""

    def __init__(self, settings: Settings, max_batch: int = 256,
                 counted: Callable[[str, str, int], None] | None = None) -> None:
        super().__init__(max_batch, counted)
        self.broker = make_rabbitmq_broker(str(settings.broker_url), [])
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="amqp-enqueue")

    async def _run(self, call: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def _send(self, batch: list[dramatiq.Message[Any]]) -> None:
        def publish() -> None:
            for message in batch:
                self.broker.enqueue(message)

        await self._run(publish)

    async def ping(self) -> bool:
        async with asyncio.timeout(5.0):
            return bool(await self._run(lambda: self.broker.connection.is_open))  # type: ignore[attr-defined]

    async def _close(self) -> None:
        await self._run(self.broker.close)
        self._thread.shutdown(wait=False)


def make_enqueuer(settings: Settings, counted: Callable[[str, str, int], None] | None = None) -> BatchingEnqueuer:
    """The gateway's enqueuer for the configured broker."""
    if settings.uses_rabbitmq:
        return AmqpEnqueuer(settings, counted=counted)
    return AsyncEnqueuer(settings, counted=counted)
