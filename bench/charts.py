"""The report's PNG charts, drawn with matplotlib's Agg backend (files only, no display needed):
latency_curve.png, throughput.png, cpu_per_booking.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: a headless box has no display

import matplotlib.pyplot as plt

CHARTS = ("latency_curve.png", "throughput.png", "cpu_per_booking.png")
TARGET_P99_MS = 25


def draw(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    return [_latency(summary, out_dir / CHARTS[0]), _throughput(summary, out_dir / CHARTS[1]),
            _cpu(summary, out_dir / CHARTS[2])]


def _latency(s: dict[str, Any], path: Path) -> Path:
    curve = s["latency"]["curve"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    xs = [p["fraction"] * 100 for p in curve]
    ax.plot(xs, [p["accept_p50_ms"] for p in curve], marker="o", label="p50")
    ax.plot(xs, [p["accept_p99_ms"] for p in curve], marker="o", label="p99")
    ax.axhline(TARGET_P99_MS, color="grey", linestyle="--", linewidth=1, label=f"p99 target {TARGET_P99_MS} ms")
    for p, x in zip(curve, xs, strict=True):
        ax.annotate(f"{p['rate_per_s']:.0f}/s", (x, p["accept_p99_ms"]), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xlabel(f"offered load, % of capacity ({s['latency']['capacity_per_s']:.0f} bookings/s)")
    ax.set_ylabel("accept latency, ms (from due time)")
    ax.set_yscale("log")
    ax.set_title("POST /v1/bookings, open loop, worker pools running")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _throughput(s: dict[str, Any], path: Path) -> Path:
    t = s["throughput"]
    bars = [("(a) pgbench: job SQL", t["pgbench_job_sql_tps"]), ("(a') pgbench: all SQL", t["pgbench_all_sql_tps"]),
            ("in-request peer", t["in_request_baseline_bookings_per_s"]), ("Totem end to end", t["e2e_bookings_per_s"])]
    bars += [(f"Totem, pool x{r['processes']}", r["bookings_per_s"]) for r in s["scaling"]["runs"]]
    bars = [(name, value) for name, value in bars if value is not None]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(bars) + 1.2))
    names, values = [b[0] for b in bars][::-1], [b[1] for b in bars][::-1]
    colours = ["tab:green" if n.startswith("Totem") else "tab:orange" if "peer" in n else "tab:grey" for n in names]
    ax.barh(names, values, color=colours)
    for y, value in enumerate(values):
        ax.annotate(f"{value:.0f}", (value, y), textcoords="offset points", xytext=(3, -3), fontsize=8)
    ax.set_xlabel("bookings (or transactions) per second")
    ax.set_title("Throughput against its ceilings, one run")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def _cpu(s: dict[str, Any], path: Path) -> Path:
    columns = {"Totem (queued)": s["cpu_ms_per_booking"]["totem"]}
    if s["cpu_ms_per_booking"].get("in_request_baseline"):
        columns["in-request peer"] = s["cpu_ms_per_booking"]["in_request_baseline"]
    parts = sorted({p for cpu in columns.values() for p in cpu if p not in ("other",)},
                   key=lambda p: -max(cpu.get(p, 0.0) for cpu in columns.values()))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    bottoms = [0.0] * len(columns)
    for part in parts:
        heights = [cpu.get(part, 0.0) for cpu in columns.values()]
        ax.bar(list(columns), heights, bottom=bottoms, label=part)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    ax.set_ylabel("CPU ms per booking")
    ax.set_title("Where the CPU goes, per booking")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
