"""One report from one run: the raw figures of every phase become a summary with stable keys
(``bench/results/latest.json``), a readable ``report.md`` (each target of issue 16 §2 against its measured
ratio, met or not, and what limits an unmet one, read from the same run's CPU table), PNG charts, and the
detailed figures printed at the end of the run.

Stable keys (a reader or a later run compares these; new keys may be added, none renamed):
``ratios.e2e_over_all_sql``, ``ratios.e2e_over_job_sql``, ``ratios.e2e_over_in_request_baseline``,
``ratios.totem_cpu_over_postgres_cpu``, ``ratios.ledger_post_over_direct``,
``latency.accept_p99_ms_at_half_capacity``, ``latency.curve``, ``ledger.entries``,
``ledger.balance_p99_ms_at_1m``, ``ledger.statement_p99_ms_at_1m`` (measured at ``ledger.entries``
entries: a quick run or a short fill says so in ``ledger.at_1m``), ``scaling.runs``, ``targets``.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import charts
from bench.details import median_of
from bench.scaling import BOOKINGS_POOL

SCHEMA_VERSION = 1
MILLION = 1_000_000
GATEWAY = "web"  # the gateway's name in the fleet, hence in the CPU table
OURS = (GATEWAY, BOOKINGS_POOL)  # our own processes on a booking's path


def _median_pair(e2e: dict[str, Any], numerator: str, denominator: str) -> float | None:
    """The median over the back-to-back pairs of (b) and the peer of numerator / denominator."""
    pairs = e2e.get("pairs")
    if not pairs and e2e.get("peer"):  # a report from before the pairs: its one (b) and one peer
        pairs = [{"e2e_bookings_per_s": e2e["bookings_per_s"], "peer_bookings_per_s": e2e["peer"]["bookings_per_s"],
                  "e2e_cpu_ms_per_booking": e2e["system_cpu_ms_per_booking"],
                  "peer_cpu_ms_per_booking": e2e["peer"]["system_cpu_ms_per_booking"]}]
    ratios = sorted(r for pair in pairs or [] if (r := _ratio(pair[numerator], pair[denominator])) is not None)
    return ratios[len(ratios) // 2] if ratios else None


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    e2e = raw["e2e"]
    cpu = e2e["cpu_ms_per_booking"]
    peer = e2e.get("peer")
    points = e2e.get("open_loop", {}).get("points", [])
    half = next((p for p in points if p["fraction"] == 0.5), None)
    led = raw["ledger"]
    ours = sum(cpu.get(part, 0.0) for part in OURS)
    summary: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": raw.get("finished_at") or datetime.now(UTC).isoformat(),
        "quick": bool(raw["params"].get("quick")),
        "machine": raw["machine"], "params": raw["params"], "phase_seconds": raw.get("phase_seconds", {}),
        "ratios": {
            "e2e_over_all_sql": _ratio(e2e["bookings_per_s"], raw["pgbench_full"]["tps"]),
            "e2e_over_job_sql": _ratio(e2e["bookings_per_s"], raw["pgbench_job"]["tps"]),
            # the median of the back-to-back pairs of (b) and the peer (older reports: the one pair)
            "e2e_over_in_request_baseline": _median_pair(e2e, "e2e_bookings_per_s", "peer_bookings_per_s"),
            # the same comparison by CPU per booking (the peer's over ours): what the two cost on a CPU-bound box,
            # less sensitive than bookings/s to what else ran on the machine during each phase
            "e2e_over_in_request_baseline_by_cpu": _median_pair(e2e, "peer_cpu_ms_per_booking",
                                                                "e2e_cpu_ms_per_booking"),
            "totem_cpu_over_postgres_cpu": _ratio(ours, cpu.get("postgres", 0.0)),
            "ledger_post_over_direct": led["post_over_direct"],
            "webhook_ingest_over_accept_only": _ratio(e2e["webhooks"]["ingested_per_s"],
                                                      e2e["accept_only"]["accepted_per_s"]),
            "pipeline_over_e2e": _ratio(e2e["pipeline"]["bookings_per_s"], e2e["bookings_per_s"])
            if "bookings_per_s" in e2e.get("pipeline", {}) else None,
        },
        "throughput": {
            "pgbench_job_sql_tps": raw["pgbench_job"]["tps"], "pgbench_all_sql_tps": raw["pgbench_full"]["tps"],
            "e2e_and_peer_pairs": [[round(p["e2e_bookings_per_s"], 1), round(p["peer_bookings_per_s"], 1)]
                                   for p in e2e.get("pairs") or []],
            "pgbench_job_sql_runs_tps": raw["pgbench_job"].get("runs_tps", []),
            "pgbench_all_sql_runs_tps": raw["pgbench_full"].get("runs_tps", []),
            "e2e_bookings_per_s": e2e["bookings_per_s"],
            "in_request_baseline_bookings_per_s": peer["bookings_per_s"] if peer else None,
            "accept_only_per_s": e2e["accept_only"]["accepted_per_s"],
            "webhook_ingest_per_s": e2e["webhooks"]["ingested_per_s"],
            "pgbench_webhook_tps": raw["pgbench_webhook"]["tps"],
            "ledger_post_tps": led["post_tps"], "ledger_direct_tps": led["direct_tps"],
        },
        "latency": {
            "accept_p99_ms_at_half_capacity": half["accept_p99_ms"] if half else None,
            "capacity_per_s": e2e["bookings_per_s"],
            "curve": [{k: p[k] for k in ("fraction", "rate_per_s", "accept_p50_ms", "accept_p99_ms",
                                         "bookings_per_s", "cores_busy", "machine_cores_busy")} for p in points],
            "closed_loop_accept_p50_ms": e2e["accept_p50_ms"], "closed_loop_accept_p99_ms": e2e["accept_p99_ms"],
            "closed_loop_concurrency": e2e["concurrency"],
            "accept_only_p99_ms": e2e["accept_only"]["accept_p99_ms"],
            "accept_to_terminal_p50_ms": e2e["accept_to_terminal_p50_ms"],
            "accept_to_terminal_p99_ms": e2e["accept_to_terminal_p99_ms"],
            "in_request_baseline_p50_ms": peer["latency_p50_ms"] if peer else None,
            "in_request_baseline_p99_ms": peer["latency_p99_ms"] if peer else None,
            "availability_http_p99_ms": e2e["availability"]["http_p99_ms"],
        },
        "cpu_ms_per_booking": {"totem": cpu, "in_request_baseline": peer["cpu_ms_per_booking"] if peer else None},
        "ledger": {
            "entries": led["entries"], "at_1m": led["entries"] >= MILLION,
            "balance_p50_ms": led["balance_p50_ms"], "balance_p99_ms_at_1m": led["balance_p99_ms"],
            "statement_p50_ms": led["statement_p50_ms"], "statement_p99_ms_at_1m": led["statement_p99_ms"],
            "post_over_direct": led["post_over_direct"],
        },
        # the rest of this shared machine (other work, not ours) during the two phases a ratio compares
        "noise": {"other_cores_during_e2e": _other_cores(e2e),
                  "other_cores_during_in_request_baseline": _other_cores(peer) if peer else None},
        "scaling": {"pool": BOOKINGS_POOL, "runs": [
            {k: r[k] for k in ("processes", "threads", "bookings_per_s", "over_one_process",
                               "system_cpu_ms_per_booking")} for r in e2e.get("scaling", {}).get("runs", [])]},
    }
    prof = e2e.get("profile", {"skipped": "not run"})
    summary["profile"] = prof if "skipped" in prof else {
        name: {"samples": prof[name]["samples"], "by_area": dict(list(prof[name]["by_area"].items())[:10]),
               "top_self": prof[name]["top_self"][:10], "file": prof[name]["file"]} for name in OURS if name in prof}
    summary["postgres_statements"] = e2e.get("pg_statements") or {
        "skipped": raw.get("pg_statements_unavailable") or "not measured in this run"}
    summary["targets"] = _targets(summary, raw)
    return summary


def _other_cores(phase: dict[str, Any]) -> float:
    """Cores the rest of the machine kept busy during a booking phase (CPU ms per booking x bookings/s)."""
    return round(float(phase["cpu_ms_per_booking"].get("other", 0.0)) * float(phase["bookings_per_s"]) / 1000, 2)


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _targets(s: dict[str, Any], raw: dict[str, Any]) -> list[dict[str, Any]]:
    r, lat, led = s["ratios"], s["latency"], s["ledger"]
    entries = "" if led["at_1m"] else f" (measured at {led['entries']:,} entries, not 1,000,000)"
    rows = [
        ("end-to-end bookings/s over (a') all SQL per booking", ">= 0.50", r["e2e_over_all_sql"], 0.5, "min"),
        ("our CPU (gateway + bookings worker) over Postgres's, per booking", "<= 1.00",
         r["totem_cpu_over_postgres_cpu"], 1.0, "max"),
        ("end-to-end over the in-request peer baseline", ">= 0.80", r["e2e_over_in_request_baseline"], 0.8, "min"),
        ("accept p99 at 50 % of capacity, open loop (ms)", "< 25", lat["accept_p99_ms_at_half_capacity"], 25, "lt"),
        (f"balance read p99 (ms){entries}", "< 5", led["balance_p99_ms_at_1m"], 5, "lt"),
        (f"statement page p99 (ms){entries}", "< 20", led["statement_p99_ms_at_1m"], 20, "lt"),
        ("ledger_post over plain inserts", ">= 0.60", r["ledger_post_over_direct"], 0.6, "min"),
    ]
    out = []
    for name, target, value, bound, kind in rows:
        met = None if value is None or (isinstance(value, float) and math.isnan(value)) else (
            value >= bound if kind == "min" else value <= bound if kind == "max" else value < bound)
        if met and name.startswith(("balance", "statement")) and not led["at_1m"]:
            met = None  # met at fewer entries proves nothing about 1,000,000
        out.append({"name": name, "target": target, "measured": value, "met": met,
                    "limit": None if met else _limit(name, s, raw)})
    return out


def _profile_line(s: dict[str, Any]) -> str:
    """The profile's biggest areas per process, for a limit's text."""
    prof = s.get("profile", {})
    if "skipped" in prof or not prof:
        return f"(no profile: {prof.get('skipped', 'not run')})"
    parts = []
    for name, p in prof.items():
        areas = ", ".join(f"{area} {share:.0%}" for area, share in list(p["by_area"].items())[:5])
        parts.append(f"py-spy, {name}: {areas}")
    return "; ".join(parts) + " (see Profile below)."


def _cpu_line(cpu: dict[str, float], top: int = 5) -> str:
    parts = sorted(((k, v) for k, v in cpu.items() if k != "other"), key=lambda kv: -kv[1])[:top]
    return ", ".join(f"{k} {v:.2f}" for k, v in parts)


def _limit(name: str, s: dict[str, Any], raw: dict[str, Any]) -> str:
    """What the same run's figures say limits a target that was not met (or could not be measured)."""
    e2e, cpus = raw["e2e"], s["machine"].get("cpus") or 1
    cpu = e2e["cpu_ms_per_booking"]
    system = e2e["system_cpu_ms_per_booking"]
    rate = e2e["bookings_per_s"]
    busy = system * rate / 1000
    cpu_bound = (f"CPU: the system spent {system:.2f} ms of CPU per booking ({_cpu_line(cpu)} ms), at "
                 f"{rate:.0f} bookings/s that is {busy:.2f} of {cpus} cores; at that cost the cores carry at most "
                 f"{cpus * 1000 / system:.0f} bookings/s (the rest of the machine took "
                 f"{s['noise']['other_cores_during_e2e']} cores meanwhile)" if system else "no CPU figures")
    peer = e2e.get("peer")
    if name.startswith("end-to-end bookings/s"):
        pg = cpu.get("postgres", 0.0)
        stmts = s["postgres_statements"]
        trips = ("" if "skipped" in stmts else f"; it ran {stmts['statements_per_booking']} statements per booking "
                 f"({stmts['exec_ms_per_booking']} ms executing them, pg_stat_statements)")
        return (f"{cpu_bound}; Postgres alone needs {pg:.2f} ms per booking{trips}, the rest is our Python and the "
                f"fake Stripe, on the same two cores as Postgres (pgbench has the cores to itself). {_profile_line(s)}")
    if name.startswith("our CPU"):
        ours = {k: cpu.get(k, 0.0) for k in OURS}
        return (f"per booking: {', '.join(f'{k} {v:.2f}' for k, v in ours.items())} ms against Postgres "
                f"{cpu.get('postgres', 0.0):.2f} ms. {_profile_line(s)}")
    if name.startswith("end-to-end over"):
        if not peer:
            return "the peer baseline did not run"
        spent = peer["system_cpu_ms_per_booking"]
        pairs = "; ".join(f"{p['e2e_bookings_per_s']:.0f} vs {p['peer_bookings_per_s']:.0f}/s"
                          for p in e2e.get("pairs") or [])
        return (f"{cpu_bound}; the in-request peer spent {spent:.2f}"
                f" ms per booking ({_cpu_line(peer['cpu_ms_per_booking'])} ms): the difference is what the "
                "queue costs (enqueue, Dramatiq's consumer, a second process reading the job). By CPU per "
                f"booking the queued path is at {_fmt(s['ratios']['e2e_over_in_request_baseline_by_cpu'])} "
                "of the peer." + (f" The pairs run back to back, (b) vs the peer: {pairs}." if pairs else ""))
    if name.startswith("accept p99"):
        half = next((p for p in e2e.get("open_loop", {}).get("points", []) if p["fraction"] == 0.5), None)
        if half is None:
            return "the open-loop phase did not run"
        return (f"at {half['rate_per_s']:.0f} arrivals/s the system kept {half['cores_busy']:.2f} of {cpus} cores "
                f"busy, the whole machine {half['machine_cores_busy']:.2f}: an accept waits for a core behind the "
                f"workers' jobs (p50 {half['accept_p50_ms']:.1f} ms, p99 "
                f"{half['accept_p99_ms']:.1f} ms; with the pool paused, closed loop at c={e2e['concurrency']}: "
                f"p99 {e2e['accept_only']['accept_p99_ms']:.1f} ms).")
    led = s["ledger"]
    if name.startswith(("balance", "statement")):
        return (f"at {led['entries']:,} entries: balance p50 {led['balance_p50_ms']} ms, statement p50 "
                f"{led['statement_p50_ms']} ms (sql/queries/ledger.sql: provider_balances; statement_opening and "
                "provider_statement, as the route runs them; bench/ledger.py's EXPLAIN shows their plans).")
    if name.startswith("ledger_post"):
        return (f"ledger_post {s['throughput']['ledger_post_tps']:.0f} tps against the same rows inserted "
                f"directly {s['throughput']['ledger_direct_tps']:.0f} tps: the function's own work per "
                "transaction (key, fingerprint, account lookups, balance check).")
    return "unknown"


def markdown(s: dict[str, Any], details: list[str]) -> str:
    t, lat = s["throughput"], s["latency"]
    mode = "quick smoke run (`--quick`): small n, short pgbench, few ledger entries" if s["quick"] else "full run"
    lines = [
        "# Totem bench report", "",
        f"{s['generated_at']} · {mode} · {s['machine'].get('cpus')} CPUs, Python {s['machine'].get('python')}, "
        "everything on this one machine (shared with other work: absolute figures are noisy; each ratio is "
        "measured within this one run).", "",
        f"Parameters: `{json.dumps(s['params'], sort_keys=True)}`", "",
        f"The rest of the machine kept {s['noise']['other_cores_during_e2e']} cores busy during (b) and "
        f"{_fmt(s['noise']['other_cores_during_in_request_baseline'])} during the peer baseline (of "
        f"{s['machine'].get('cpus')}): the more, the lower both figures.", "",
        "## Targets (issue 16 §2)", "",
        "| target | goal | measured | met |", "|---|---|---|---|",
    ]
    for row in s["targets"]:
        verdict = "yes" if row["met"] else "no" if row["met"] is False else "not measured"
        lines.append(f"| {row['name']} | {row['target']} | {_fmt(row['measured'])} | {verdict} |")
    unmet = [row for row in s["targets"] if not row["met"]]
    if unmet:
        lines += ["", "### What limits each unmet target", ""]
        lines += [f"- **{row['name']}**: {row['limit']}" for row in unmet]
    lines += [
        "", "## Throughput", "",
        "| what | per second |", "|---|---|",
        f"| (a) pgbench, the booking job's SQL{median_of(t['pgbench_job_sql_runs_tps'])} | "
        f"{t['pgbench_job_sql_tps']:.0f} |",
        f"| (a') pgbench, all SQL per booking (accept + job){median_of(t['pgbench_all_sql_runs_tps'])} | "
        f"{t['pgbench_all_sql_tps']:.0f} |",
        "| in-request peer baseline (same SQL + Stripe call, one request) | "
        f"{_fmt(t['in_request_baseline_bookings_per_s'], '.0f')} |",
        f"| (b) Totem end to end (accepted, queued, every job terminal) | {t['e2e_bookings_per_s']:.0f} |",
        f"| accept only (bookings pool paused) | {t['accept_only_per_s']:.0f} |",
        f"| webhook ingest (payments pool paused) | {t['webhook_ingest_per_s']:.0f} |",
        *([] if len(t["e2e_and_peer_pairs"]) < 2 else [
            "", "(b) and the peer again, back to back (bookings/s, (b) vs peer): "
            + "; ".join(f"{e:.0f} vs {p:.0f}" for e, p in t["e2e_and_peer_pairs"])
            + ". Their ratio in the targets is the median pair's."]),
        "", "![throughput vs ceilings](throughput.png)", "",
        "## Accept latency, open loop (fixed arrival rate; latency from each request's due time)", "",
        f"Capacity = (b) = {lat['capacity_per_s']:.0f} bookings/s.", "",
        "| offered | arrivals/s | p50 ms | p99 ms | completed bookings/s | cores busy: system / machine |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {p['fraction']:.0%} | {p['rate_per_s']:.0f} | {p['accept_p50_ms']:.1f} | {p['accept_p99_ms']:.1f} "
              f"| {p['bookings_per_s']:.0f} | {p['cores_busy']:.2f} / {p['machine_cores_busy']:.2f} |"
              for p in lat["curve"]]
    lines += [
        "", f"Closed loop at c={lat['closed_loop_concurrency']} (saturating): p50 "
        f"{lat['closed_loop_accept_p50_ms']:.1f} ms, p99 {lat['closed_loop_accept_p99_ms']:.1f} ms; accept only p99 "
        f"{lat['accept_only_p99_ms']:.1f} ms; in-request peer p50 {_fmt(lat['in_request_baseline_p50_ms'])} ms, "
        f"p99 {_fmt(lat['in_request_baseline_p99_ms'])} ms (the whole booking, Stripe included).",
        "", "![latency curve](latency_curve.png)", "",
        "## CPU per booking (ms, from /proc over each phase)", "",
    ]
    lines += _cpu_table(s["cpu_ms_per_booking"])
    lines += ["", "![CPU per part](cpu_per_booking.png)", "", "## Bookings pool scaling", "",
              "| processes | bookings/s | × one process | system CPU ms/booking |", "|---|---|---|---|"]
    lines += [f"| {r['processes']} × {r['threads']} threads | {r['bookings_per_s']:.0f} | "
              f"{r['over_one_process']:.2f} | {r['system_cpu_ms_per_booking']:.2f} |" for r in s["scaling"]["runs"]]
    lines += ["", "## Profile (py-spy during (b) run again; the thread holding the GIL: Python at work)", ""]
    lines += ["py-spy samples only the thread that holds the GIL (`--gil`), so the shares are of the Python CPU "
              "time: a thread waiting for a socket, a lock or a core is not counted, and neither is the time in "
              "system calls and C code that let the GIL go (the kernel's part of the CPU table).", ""]
    lines += _profile_md(s["profile"])
    lines += ["", "## Postgres during (b) (pg_stat_statements)", ""]
    lines += _statements_md(s["postgres_statements"])
    led = s["ledger"]
    lines += ["", "## Ledger", "",
              f"{led['entries']:,} entries on one provider"
              f"{'' if led['at_1m'] else ' (fewer than 1,000,000: the `_at_1m` keys are at this count)'}: "
              f"balance p50 {led['balance_p50_ms']} ms, p99 {led['balance_p99_ms_at_1m']} ms; statement page "
              f"p50 {led['statement_p50_ms']} ms, p99 {led['statement_p99_ms_at_1m']} ms; ledger_post = "
              f"{led['post_over_direct']:.0%} of plain inserts.",
              "", "## Every figure", "", "```", *details, "```", ""]
    return "\n".join(lines)


def _statements_md(stmts: dict[str, Any]) -> list[str]:
    if "skipped" in stmts:
        return [f"Not measured: {stmts['skipped']}."]
    lines = [f"{stmts['statements_per_booking']} statements per booking (round trips, the gateway's and the "
             f"workers' together), {stmts['exec_ms_per_booking']} ms executing them per booking.", "",
             "| statement | calls per booking | mean ms | share of execution time |", "|---|---|---|---|"]
    lines += [f"| `{r['statement']}` | {r['calls_per_booking']} | {r['mean_ms']} | {r['share']:.1%} |"
              for r in stmts["top"]]
    return lines


def _profile_md(prof: dict[str, Any]) -> list[str]:
    if "skipped" in prof:
        return [f"Not run: {prof['skipped']}."]
    lines = []
    for name, p in prof.items():
        lines += [f"**{name}** ({p['samples']} samples; collapsed stacks in `{p['file']}`): by library "
                  + ", ".join(f"{area} {share:.0%}" for area, share in p["by_area"].items()) + ".", "",
                  "| on top of the stack | share |", "|---|---|"]
        lines += [f"| `{row['function']}` | {row['share']:.1%} |" for row in p["top_self"]]
        lines.append("")
    return lines


def _cpu_table(cpu: dict[str, Any]) -> list[str]:
    ours, peer = cpu["totem"], cpu.get("in_request_baseline") or {}
    parts = sorted(set(ours) | set(peer), key=lambda k: -(ours.get(k, 0.0) + peer.get(k, 0.0)))
    lines = ["| part | Totem (queued) | in-request peer |", "|---|---|---|"]
    lines += [f"| {part} | {_fmt(ours.get(part), '.2f')} | {_fmt(peer.get(part), '.2f')} |" for part in parts]
    return lines


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def write(raw: dict[str, Any], out_dir: Path, details: list[str]) -> dict[str, Any]:
    """latest.json (the summary, the raw figures under ``raw``), report.md and the charts, in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(raw)
    (out_dir / "latest.json").write_text(json.dumps({**summary, "raw": raw}, indent=2, default=str))
    (out_dir / "report.md").write_text(markdown(summary, details))
    charts.draw(summary, out_dir)
    return summary
