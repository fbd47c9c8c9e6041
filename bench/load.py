"""A lean HTTP/1.1 keep-alive load generator (asyncio + uvloop, raw streams): N prepared requests at
concurrency C, per-request latency recorded. Lean because on a 2-core box every cycle it burns is taken
from the gateway, the workers and Postgres it measures.

Python's cyclic garbage collector is off while a load runs: the bench process holds every earlier phase's
figures, and a full collection of them stopped this generator for up to 60 ms in the middle of an open-loop
point (seen with gc.callbacks), which counted as the gateway's latency in every request due meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    bodies: list[bytes] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0


def build_post(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic collection while a load runs (reference counting still frees what it makes)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


async def run_load(host: str, port: int, requests: Sequence[bytes], concurrency: int,
                   progress: Callable[[int], None] | None = None) -> LoadResult:
    result = LoadResult()
    queue = iter(enumerate(requests))
    result.bodies = [b""] * len(requests)

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for index, raw in queue:
                sent = time.perf_counter()
                writer.write(raw)
                status, body = await _read_response(reader)
                result.latencies.append(time.perf_counter() - sent)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.bodies[index] = body
                if progress is not None:
                    progress(len(result.latencies))
        finally:
            writer.close()

    result.started = time.perf_counter()
    with _collector_paused():
        await asyncio.gather(*(client() for _ in range(concurrency)))
    result.finished = time.perf_counter()
    return result


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


async def run_open_loop(host: str, port: int, requests: Sequence[bytes], rate: float,
                        max_connections: int = 512, warm_connections: int = 16) -> LoadResult:
    """Open loop: request ``i`` is due at ``start + i / rate`` whatever happened to the earlier ones, and its
    latency runs from that due time, not from when it was sent. A closed loop (``run_load``) waits for an
    answer before sending the next request, so a slow server slows the load down and its queueing never
    shows up in the latencies (coordinated omission); here a stall shows up in every request due during it.

    Keep-alive connections are reused; a request due while every open one is busy opens another (up to
    ``max_connections``, then it waits for one and that wait counts in its latency)."""
    result = LoadResult()
    result.bodies = [b""] * len(requests)
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened: list[asyncio.StreamWriter] = []
    slots = asyncio.Semaphore(max_connections)

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(host, port)
        opened.append(writer)
        return reader, writer

    for _ in range(min(warm_connections, max_connections)):  # not counted: a warm client has its connections
        idle.append(await connect())

    async def send(index: int, raw: bytes, due: float) -> None:
        async with slots:
            reader, writer = idle.pop() if idle else await connect()
            try:
                writer.write(raw)
                status, body = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                # the server closed this connection while it sat idle (uvicorn's keep-alive timeout) before
                # reading the request: as an HTTP client does, send it again on a fresh one (late: it counts)
                reader, writer = await connect()
                writer.write(raw)
                status, body = await _read_response(reader)
            result.latencies.append(time.perf_counter() - due)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            result.bodies[index] = body
            idle.append((reader, writer))

    tasks = []
    with _collector_paused():
        result.started = start = time.perf_counter()
        for index, raw in enumerate(requests):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(index, raw, due)))
        await asyncio.gather(*tasks)
        result.finished = time.perf_counter()
    for writer in opened:
        writer.close()
    return result
