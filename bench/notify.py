"""NOTIFY on vs off: pgbench of the booking job's SQL (job.sql; its booking statement inserts the outbox row)
with the ``outbox_notify`` trigger enabled and disabled, same clients and duration, runs interleaved
(off, on, off, on) so drift (table growth, a checkpoint) falls on both sides.

A committing transaction that has NOTIFYed holds a database-wide lock from just before its commit record
until the end of its commit (its WAL flush included), so notifying commits do not overlap; that is what is
measured. A relay's LISTEN is open throughout, drained by a thread, so each notifying commit also signals a
listening backend, as in production.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg

from workers.relay import CHANNEL

ENABLE = "ALTER TABLE outbox ENABLE TRIGGER outbox_notify"
DISABLE = "ALTER TABLE outbox DISABLE TRIGGER outbox_notify"
ORDER = (False, True, False, True)  # notify off, on, off, on: one script (and job space) per run


def set_notify(url: str, enabled: bool) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ENABLE if enabled else DISABLE)


class Listener:
    """LISTEN on the relay's channel, drained in a thread; counts what it hears."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.heard = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._drain, name="bench-listener", daemon=True)

    def __enter__(self) -> Listener:
        self.conn.execute(f"LISTEN {CHANNEL}")
        self.thread.start()
        return self

    def _drain(self) -> None:
        while not self.stopping.is_set():
            for _ in self.conn.notifies(timeout=0.2):
                self.heard += 1

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stopping.set()
        self.thread.join()
        self.conn.close()


def compare(url: str, scripts: list[Path], pgbench: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Run ``scripts[i]`` with NOTIFY per ``ORDER[i]``; the trigger is left as migration 0006 leaves it
    (disabled: the relays poll)."""
    runs = []
    try:
        with Listener(url) as listener:
            for enabled, script in zip(ORDER, scripts, strict=True):
                set_notify(url, enabled)
                runs.append({"notify": enabled, **pgbench(script)})
    finally:
        set_notify(url, False)
    on = statistics.mean(run["tps"] for run in runs if run["notify"])
    off = statistics.mean(run["tps"] for run in runs if not run["notify"])
    return {"runs": runs, "on_tps": on, "off_tps": off, "on_over_off": on / off,
            "notifications_heard": listener.heard}
