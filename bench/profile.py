"""Where our processes' CPU goes: py-spy samples the gateway and the bookings pool (every process of each,
from outside, non-blocking) while a booking phase runs, and each profile is reduced to the share of samples
by library and the functions on top of the stack most often. The report cites it for the targets that CPU
limits. Only the thread holding the GIL is sampled (``--gil``), so the shares are of Python's CPU time: without
it py-spy counted every thread the OS did not show asleep, and a worker's eight threads woken from a round trip
and queued for a core filled the profile with psycopg's ``Connection.wait``."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# a frame's file -> what it is; the first match wins (order: our code first, then the libraries it calls)
AREAS = (
    ("/shared/", "totem shared/"), ("/workers/", "totem workers/"), ("/gateway/", "totem gateway/"),
    ("/stripe/", "stripe SDK"), ("/requests/", "requests"), ("/urllib3/", "urllib3"),
    ("/dramatiq/", "dramatiq"), ("/redis/", "redis-py"), ("/psycopg_pool/", "psycopg"), ("/psycopg/", "psycopg"),
    ("/litestar/", "litestar"), ("/uvicorn/", "uvicorn"), ("/msgspec/", "msgspec"), ("/structlog/", "logging"),
    ("/logging/", "logging"), ("/prometheus_client/", "prometheus"), ("/http/", "stdlib http"),
    ("/json/", "stdlib json"), ("/ssl.py", "ssl"), ("/socket.py", "stdlib socket"),
    ("/threading.py", "stdlib threading"), ("/asyncio/", "asyncio"),
)


def binary() -> str | None:
    return shutil.which("py-spy") or next((str(p) for p in [Path(sys.executable).parent / "py-spy"] if p.exists()),
                                          None)


@contextlib.contextmanager
def sampling(pids: dict[str, int], out_dir: Path, rate: int = 200) -> Iterator[dict[str, Path]]:
    """py-spy on each process tree in ``pids`` (name -> leader pid) while the block runs; yields the raw
    (collapsed stack) files it writes when stopped."""
    spy = binary()
    if spy is None:
        raise RuntimeError("py-spy is not installed (pip install 'totem[bench]')")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: out_dir / f"profile-{name}.txt" for name in pids}
    procs = [subprocess.Popen([spy, "record", "--pid", str(pid), "--subprocesses", "--gil", "--nonblocking",
                               "--format", "raw", "--rate", str(rate), "--output", str(files[name])],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for name, pid in pids.items()]
    try:
        yield files
    finally:
        for proc in procs:  # SIGINT: py-spy stops sampling and writes its file
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def summarize(path: Path, top: int = 12) -> dict[str, Any]:
    """Shares of samples by area (the innermost frame's library) and the top self-time functions."""
    if not path.exists():
        return {"samples": 0, "by_area": {}, "top_self": []}
    areas: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if "(" in f and not f.startswith("process ")]
        if not frames:
            continue
        total += n
        leaf = frames[-1]
        leaves[_function(leaf)] += n
        areas[next((area for f in reversed(frames) if (area := _area(f)) is not None), "other")] += n
    share = (lambda n: round(n / total, 3)) if total else (lambda n: 0.0)
    return {"samples": total, "by_area": {k: share(v) for k, v in areas.most_common()},
            "top_self": [{"function": k, "share": share(v)} for k, v in leaves.most_common(top)]}


def _area(frame: str) -> str | None:
    where = "/" + frame.partition(" (")[2]  # a path py-spy shows relative (the working directory's) gets its "/"
    return next((area for key, area in AREAS if key in where), None)


def _function(frame: str) -> str:
    """``name (path/to/module.py:123)`` -> ``name (module.py)``: one entry per function, not per line."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    return f"{name} ({'/'.join(file.split('/')[-2:])})"
