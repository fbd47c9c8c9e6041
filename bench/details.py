"""The run's every figure as text lines: printed at the end of ``totem bench`` and kept in report.md."""

from __future__ import annotations

from typing import Any


def figure_lines(report: dict[str, Any]) -> list[str]:
    """Every figure of the run, as text (printed at the end, and kept in report.md)."""
    e2e, job, full, hook = report["e2e"], report["pgbench_job"], report["pgbench_full"], report["pgbench_webhook"]
    av, wh, ao = e2e["availability"], e2e["webhooks"], e2e["accept_only"]
    led = report["ledger"]
    cpu = "  ".join(f"{k} {v}" for k, v in e2e["cpu_ms_per_booking"].items())
    out = [
        f"Totem bench ({report['machine']['cpus']} CPUs, everything on this machine)",
        f"  (a)  pgbench, the booking job's SQL             {job['tps']:8.0f} tps   (avg {job['latency_avg_ms']} ms)"
        f"{median_of(job.get('runs_tps') or [])}",
        f"  (a') pgbench, all SQL per booking (accept+job)  {full['tps']:8.0f} tps   (avg {full['latency_avg_ms']} ms)"
        f"{median_of(full.get('runs_tps') or [])}",
        f"  (b)  end-to-end bookings/s through the gateway  {e2e['bookings_per_s']:8.0f} /s    "
        f"({e2e['succeeded']} succeeded, {e2e['failed']} failed)",
        f"       accepts/s (202s answered)                  {e2e['accepted_per_s']:8.0f} /s",
        f"  b / a   = {e2e['bookings_per_s'] / job['tps']:.0%}   (target >= 30%, goal 50%)",
        f"  b / a'  = {e2e['bookings_per_s'] / full['tps']:.0%}",
        f"  accept latency        p50 {e2e['accept_p50_ms']:.1f} ms   p99 {e2e['accept_p99_ms']:.1f} ms   "
        f"(concurrency {e2e['concurrency']}; target p99 < 25 ms)",
        f"  accept -> terminal    p50 {e2e['accept_to_terminal_p50_ms']:.1f} ms   "
        f"p99 {e2e['accept_to_terminal_p99_ms']:.1f} ms",
        f"  CPU ms per booking    {cpu}",
        *_pipeline_lines(report),
        f"  accept-only (workers paused)  {ao['accepted_per_s']:.0f} accepts/s   "
        f"p50 {ao['accept_p50_ms']:.1f} ms   p99 {ao['accept_p99_ms']:.1f} ms",
        f"  webhook ingest (verify + store + enqueue, payments pool paused)  {wh['ingested_per_s']:.0f} events/s   "
        f"p50 {wh['p50_ms']:.1f} ms   p99 {wh['p99_ms']:.1f} ms",
        f"       / accept-only rate = {wh['ingested_per_s'] / ao['accepted_per_s']:.0%}    "
        f"/ pgbench of its statement ({hook['tps']:.0f} tps) = {wh['ingested_per_s'] / hook['tps']:.0%}",
        f"  ledger posting (pgbench)  ledger_post {led['post_tps']:.0f} tps   "
        f"vs the same rows inserted directly {led['direct_tps']:.0f} tps   = {led['post_over_direct']:.0%}",
        f"  at {led['entries']} entries on one provider: statement page p50 {led['statement_p50_ms']} ms "
        f"p99 {led['statement_p99_ms']} ms;   balance p50 {led['balance_p50_ms']} ms p99 {led['balance_p99_ms']} ms",
        f"  availability, 30 days, {av['bookings_on_resource']} bookings on the resource "
        f"({av['free_slots']} free slots):",
        f"       database p50 {av['db_p50_ms']:.1f} ms  p99 {av['db_p99_ms']:.1f} ms    "
        f"through the gateway p50 {av['http_p50_ms']:.1f} ms  p99 {av['http_p99_ms']:.1f} ms",
        *_new_phase_lines(report),
    ]
    return out


def _pipeline_lines(report: dict[str, Any]) -> list[str]:
    """The outbox pipeline's figures: NOTIFY's cost to (a), and (c)/(c') against (b)."""
    nb, b = report["notify_pgbench"], report["e2e"]
    runs = " / ".join(f"{'on' if r['notify'] else 'off'} {r['tps']:.0f}" for r in nb["runs"])
    lines = [
        f"  NOTIFY: pgbench of (a)'s SQL, trigger on {nb['on_tps']:.0f} tps vs off {nb['off_tps']:.0f} tps "
        f"= {nb['on_over_off']:.0%}   (runs {runs}; a relay LISTENing)",
    ]
    for key, label in (("pipeline_relay", "(r)  (b) with the relay alone (no sending)"),
                       ("pipeline", "(c)  (b) with relay + notifications + SMTP sink"),
                       ("pipeline_notify_on", "(c') (c) with the NOTIFY trigger on (relay woken)")):
        c = b.get(key, {"skipped": "not run"})
        if "skipped" in c:
            lines.append(f"  {label}  skipped: {c['skipped']}")
            continue
        mail = "emails_delivered" in c
        versus_c = (f", {c['bookings_per_s'] / b['pipeline']['bookings_per_s']:.0%} of (c)"
                    if key == "pipeline_notify_on" and "bookings_per_s" in b.get("pipeline", {}) else "")
        if mail and not c["undelivered"]:  # CPU-bound, sustained: the cores shared by more work per booking
            by_cpu = (f"       sustained, by CPU: {b['system_cpu_ms_per_booking']:.1f} -> "
                      f"{c['system_cpu_ms_per_booking']:.1f} ms per booking = "
                      f"{b['system_cpu_ms_per_booking'] / c['system_cpu_ms_per_booking']:.0%} of (b)")
        else:
            by_cpu = ""
        lines += [
            f"  {label}  {c['bookings_per_s']:6.0f} /s   = {c['bookings_per_s'] / b['bookings_per_s']:.0%} of (b)"
            f"{versus_c}   ({'target >= 90%; ' if key != 'pipeline_notify_on' else ''}{c['succeeded']} succeeded, "
            f"{c['failed']} failed)",
            f"       relay {c['relay_events_per_s']:.0f} events/s ({c['published']}/{c['events']} published, "
            f"{c['relay_batches']} batches, {_num(c['events_per_batch'], '.1f')} events/batch)   outbox lag "
            f"p50 {_num(c['outbox_lag_p50_ms'])} ms  p99 {_num(c['outbox_lag_p99_ms'])} ms  "
            f"max {_num(c['outbox_lag_max_ms'])} ms",
            (f"       emails {c['emails_per_s']:.0f} /s delivered ({c['emails_delivered']} emails, {c['in_app']} "
             f"in-app, {c['undelivered']} undelivered)   event -> email p50 {_num(c['event_to_email_p50_ms'])} ms"
             f"  p99 {_num(c['event_to_email_p99_ms'])} ms") if mail else "       (its mail not waited for)",
            f"       accept p99 {c['accept_p99_ms']:.1f} ms   accept -> terminal p50 "
            f"{c['accept_to_terminal_p50_ms']:.1f} ms  p99 {c['accept_to_terminal_p99_ms']:.1f} ms",
            f"       CPU ms per booking ({'until every email is out' if mail else 'until every event is published'})  "
            + "  ".join(f"{k} {v}" for k, v in c["cpu_ms_per_booking"].items()),
            *([by_cpu] if by_cpu else []),
        ]
    return lines


def _num(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def _new_phase_lines(report: dict[str, Any]) -> list[str]:
    """The peer baseline, the open-loop curve and pool scaling."""
    e2e = report["e2e"]
    out = []
    if "peer" in e2e:
        p = e2e["peer"]
        out += [f"  in-request peer baseline (uvicorn x{p['processes']}, {p['threads']} threads)  "
                f"{p['bookings_per_s']:.0f} bookings/s   ({p['succeeded']} succeeded)   latency p50 "
                f"{p['latency_p50_ms']:.1f} ms  p99 {p['latency_p99_ms']:.1f} ms",
                f"       (b) / peer = {e2e['bookings_per_s'] / p['bookings_per_s']:.0%}   CPU ms per booking  "
                + "  ".join(f"{k} {v}" for k, v in p["cpu_ms_per_booking"].items())]
    for point in e2e.get("open_loop", {}).get("points", []):
        out.append(f"  open loop {point['fraction']:.0%} of capacity ({point['rate_per_s']:.0f}/s)  accept p50 "
                   f"{point['accept_p50_ms']:.1f} ms  p99 {point['accept_p99_ms']:.1f} ms  max "
                   f"{point['accept_max_ms']:.1f} ms   completed {point['bookings_per_s']:.0f}/s   "
                   f"cores busy: system {point['cores_busy']:.2f}, machine {point['machine_cores_busy']:.2f}")
    for run in e2e.get("scaling", {}).get("runs", []):
        out.append(f"  bookings pool x{run['processes']} ({run['threads']} threads)  {run['bookings_per_s']:.0f} "
                   f"bookings/s = {run['over_one_process']:.2f} x one process   system CPU "
                   f"{run['system_cpu_ms_per_booking']:.2f} ms per booking")
    return out


def median_of(runs: list[float]) -> str:
    """The runs a ceiling is the median of, as the report shows them (older reports have one run only)."""
    return f" (median of {' / '.join(f'{tps:.0f}' for tps in runs)})" if len(runs) > 1 else ""
