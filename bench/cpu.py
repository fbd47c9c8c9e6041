"""CPU seconds per part of the system (from /proc), so a bench run says where the cores went, and what the
rest of the machine took meanwhile ("other": whatever else ran, e.g. a test suite, or a process that exited)."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_by_part(sessions: dict[str, int], servers: dict[str, int]) -> dict[str, float]:
    """Sum utime+stime of live processes: fleet parts by session id; our Postgres and Redis by the pid of
    their leader (``servers``: the postmaster and its children), or, when not ours, any by name; this process."""
    totals: dict[str, float] = {}
    me = os.getpid()
    by_session = {sid: name for name, sid in sessions.items()}
    by_leader = {pid: name for name, pid in servers.items()}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1: stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        pid, parent, session = int(proc.name), int(fields[1]), int(fields[3])
        seconds = (int(fields[11]) + int(fields[12])) / _TICKS
        server = "postgres" if comm.startswith(("postgres", "postmaster")) else (
            "redis" if comm.startswith("redis-server") else None)
        if pid == me:
            part = "load generator"
        elif session in by_session:
            part = by_session[session]
        elif pid in by_leader or parent in by_leader:
            part = by_leader.get(pid) or by_leader[parent]
        elif server is not None and server not in servers:
            part = server
        else:
            continue
        totals[part] = totals.get(part, 0.0) + seconds
    totals[_MACHINE] = _machine_busy()
    return totals


def _machine_busy() -> float:
    """Busy seconds of every CPU since boot: user, nice, system, irq, softirq, steal."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:3]) + sum(fields[5:8])) / _TICKS


_MACHINE = "(machine)"


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Seconds per part between two samples; the machine's busy time not taken by a part is "other"."""
    parts = {part: after.get(part, 0.0) - before.get(part, 0.0) for part in sorted(after) if part != _MACHINE}
    parts["other"] = max(0.0, after[_MACHINE] - before[_MACHINE] - sum(parts.values()))
    return {part: round(seconds, 2) for part, seconds in parts.items()}
