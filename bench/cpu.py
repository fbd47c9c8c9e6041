"""CPU seconds per part of the system (from /proc), so a bench run says where the cores went."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_by_part(sessions: dict[str, int]) -> dict[str, float]:
    """Sum utime+stime of live processes: fleet parts by session id, servers by name, this process."""
    totals: dict[str, float] = {}
    me = os.getpid()
    by_session = {sid: name for name, sid in sessions.items()}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1: stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        session, seconds = int(fields[3]), (int(fields[11]) + int(fields[12])) / _TICKS
        if int(proc.name) == me:
            part = "load generator"
        elif session in by_session:
            part = by_session[session]
        elif comm.startswith(("postgres", "postmaster")):
            part = "postgres"
        elif comm.startswith("redis-server"):
            part = "redis"
        else:
            continue
        totals[part] = totals.get(part, 0.0) + seconds
    return totals


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {part: round(after.get(part, 0.0) - before.get(part, 0.0), 2) for part in sorted(after)}
