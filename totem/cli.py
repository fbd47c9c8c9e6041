"""``totem``: the one command line for every process type and for the embedded default."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import NoReturn

from shared.registry import POOL_BY_NAME
from totem.console import say


def cmd_migrate(args: argparse.Namespace) -> int:
    from totem.migrate import migrate

    applied = migrate(_require("DATABASE_URL"))
    say(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
    return 0


def cmd_ledger_check(args: argparse.Namespace) -> int:
    import psycopg
    from psycopg.rows import dict_row

    from shared import ledger
    from shared.db import QUERIES

    with psycopg.connect(_require("DATABASE_URL"), row_factory=dict_row, autocommit=True) as conn:
        if args.rebuild:
            say(f"derived balances rebuilt from the entries: {ledger.rebuild_summary(conn)} accounts")
        unbalanced = conn.execute(QUERIES["ledger_trial_balance"]).fetchall()
        drift = ledger.summary_drift(conn)
    print(json.dumps({"unbalanced_transactions": unbalanced, "summary_drift": drift}, indent=2, default=str))
    return 1 if unbalanced or drift else 0


def cmd_seed(args: argparse.Namespace) -> int:
    from totem.seed import seed

    print(json.dumps(seed(_require("DATABASE_URL")), indent=2))
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    if args.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="totem-metrics-")
    port = args.port or int(os.environ.get("PORT", "8000"))
    say(f"gateway on http://{args.host}:{port} ({args.workers} worker process(es))")
    uvicorn.run("gateway.app:create_app", factory=True, host=args.host, port=port, workers=args.workers,
                loop="uvloop", http="httptools", access_log=False, log_level="warning",
                proxy_headers=False,  # X-Forwarded-For is believed only from TRUSTED_PROXIES (gateway/access.py)
                timeout_graceful_shutdown=20)
    return 0


def cmd_worker(args: argparse.Namespace) -> NoReturn:
    pool = POOL_BY_NAME[args.pool]
    processes = args.processes or _env_int(f"{pool.name.upper()}_PROCESSES", "WORKER_PROCESSES") or pool.processes
    threads = args.threads or _env_int(f"{pool.name.upper()}_THREADS", "WORKER_THREADS") or pool.threads
    os.environ.setdefault("dramatiq_queue_prefetch", str(max(2, threads * 4)))
    # Dramatiq's Prometheus middleware reads these at import: a fresh metrics folder per pool start (counters
    # of dead processes from an earlier run must not add up) and the port its exposition server binds.
    os.environ["dramatiq_prom_db"] = tempfile.mkdtemp(prefix=f"totem-{pool.name}-metrics-")  # noqa: SIM112
    metrics_port = os.environ.get("WORKER_METRICS_PORT") or os.environ.get("dramatiq_prom_port") or "9191"  # noqa: SIM112
    os.environ["dramatiq_prom_port"] = metrics_port  # noqa: SIM112 - Dramatiq's own (lower-case) variable names
    nice = _env_int(f"{pool.name.upper()}_NICE")
    nice = pool.nice if nice is None else nice
    if nice:
        os.nice(nice)  # before the exec, so Dramatiq's forked worker processes inherit it
    argv = [sys.executable, "-m", "dramatiq", pool.module, "--queues", pool.queue, "--processes", str(processes),
            "--threads", str(threads), "--skip-logging", "--worker-shutdown-timeout", "30000"]
    say(f"worker pool {pool.name}: {processes} process(es) x {threads} thread(s) on queue {pool.queue}; "
        f"metrics on :{metrics_port}" + (f"; CPU priority nice {nice}" if nice else ""))
    os.execv(argv[0], argv)  # noqa: S606 - become Dramatiq's own CLI, with our arguments


def _env_int(*names: str) -> int | None:
    for name in names:
        if os.environ.get(name):
            return int(os.environ[name])
    return None


def cmd_scheduler(args: argparse.Namespace) -> int:
    from workers.scheduler import main

    main()
    return 0


def cmd_relay(args: argparse.Namespace) -> int:
    from workers.relay import main

    main()
    return 0


def cmd_smtp_sink(args: argparse.Namespace) -> int:
    from pathlib import Path

    from totem.smtp_sink import serve

    port = args.port or int(os.environ.get("SMTP_SINK_PORT", "2525"))
    directory = Path(args.dir or os.environ.get("SMTP_SINK_DIR", ".totem-data/mail")).resolve()
    say(f"SMTP sink on {args.host}:{port} (SMTP_URL=smtp://{args.host}:{port}); "
        f"every message lands in {directory} as an .eml file")
    os.nice(10)  # a dev stand-in for a mail server: on a shared host it never gets ahead of the product
    serve(args.host, port, directory)
    return 0


def cmd_fake_stripe(args: argparse.Namespace) -> int:
    import uvicorn

    port = args.port or int(os.environ.get("FAKE_STRIPE_PORT", "12111"))
    webhook = os.environ.get("FAKE_STRIPE_WEBHOOK_URL") or \
        f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/v1/webhooks/stripe"
    say(f"fake Stripe API on http://{args.host}:{port} (point STRIPE_API_BASE there); "
        f"signed webhooks go to {webhook}")
    uvicorn.run("totem.fake_stripe:create_app", factory=True, host=args.host, port=port, loop="uvloop",
                http="httptools", access_log=False, log_level="warning")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from bench.run import main

    return main(args)


def cmd_chaos(args: argparse.Namespace) -> int:
    from pathlib import Path

    from totem.chaos.run import Options, main

    return main(Options(duration=args.duration, seed=args.seed, report=Path(args.report), broker=args.broker,
                        clients=args.clients, settle_timeout=args.settle_timeout,
                        data_dir=Path(args.data_dir) if args.data_dir else None))


def cmd_up(args: argparse.Namespace) -> int:
    from totem.up import up

    return up(args)


def cmd_generate(args: argparse.Namespace) -> int:
    from totem.generate import generate

    return generate(check=args.check)


def _require(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        say(f"{name} is not set (run `totem up` for the embedded default)")
        raise SystemExit(2)
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="totem", description="Totem booking-and-payments backend")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply SQL migrations to DATABASE_URL").set_defaults(func=cmd_migrate)
    sub.add_parser("seed", help="create the demo catalog and print it as JSON").set_defaults(func=cmd_seed)
    lc = sub.add_parser("ledger-check", help="prove the ledger: every transaction balances, derived balances "
                        "equal the entries (exit 1 on any difference)")
    lc.add_argument("--rebuild", action="store_true", help="rebuild the derived balances from the entries first")
    lc.set_defaults(func=cmd_ledger_check)

    gw = sub.add_parser("gateway", help="run the HTTP gateway (uvicorn) on $PORT")
    gw.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a container's gateway serves every interface
    gw.add_argument("--port", type=int, default=None)
    gw.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")))
    gw.set_defaults(func=cmd_gateway)

    wk = sub.add_parser("worker", help="run one worker pool (Dramatiq)")
    wk.add_argument("pool", choices=sorted(POOL_BY_NAME))
    wk.add_argument("--processes", "-p", type=int, default=None,
                    help="default: $<POOL>_PROCESSES, $WORKER_PROCESSES, else the registry's")
    wk.add_argument("--threads", "-t", type=int, default=None,
                    help="default: $<POOL>_THREADS, $WORKER_THREADS, else the registry's")
    wk.set_defaults(func=cmd_worker)

    sub.add_parser("scheduler", help="run the single-leader scheduler").set_defaults(func=cmd_scheduler)
    sub.add_parser("relay", help="run an outbox relay (any number may run)").set_defaults(func=cmd_relay)

    sink = sub.add_parser("smtp-sink", help="run the local SMTP server that keeps every message as a file (dev)")
    sink.add_argument("--host", default="127.0.0.1")
    sink.add_argument("--port", type=int, default=None)
    sink.add_argument("--dir", default=None, help="where messages land (default $SMTP_SINK_DIR or .totem-data/mail)")
    sink.set_defaults(func=cmd_smtp_sink)

    fs = sub.add_parser("fake-stripe", help="run the local fake Stripe API (dev and tests)")
    fs.add_argument("--host", default="127.0.0.1")
    fs.add_argument("--port", type=int, default=None)
    fs.set_defaults(func=cmd_fake_stripe)

    upp = sub.add_parser("up", help="run the whole fleet; embedded Postgres/Redis when no URLs are given")
    upp.add_argument("--data-dir", default=os.environ.get("TOTEM_DATA_DIR", ".totem-data"))
    upp.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    upp.add_argument("--web-workers", type=int, default=2)
    upp.set_defaults(func=cmd_up)

    gen = sub.add_parser("generate", help="write the Procfile, docker-compose.yml, k8s manifests and the README's "
                                           "error-code table from the registry and the error vocabulary")
    gen.add_argument("--check", action="store_true", help="only report files that differ (exit 1)")
    gen.set_defaults(func=cmd_generate)

    bn = sub.add_parser("bench", help="every benchmark in one run, one report: bench/results/latest.json, "
                                      "report.md and PNG charts")
    bn.add_argument("--quick", action="store_true",
                    help="a smoke run of every phase within ~3 minutes: small n, short pgbench, 20,000 ledger "
                         "entries (the report says so)")
    bn.add_argument("--requests", "-n", type=int, default=3000)
    bn.add_argument("--concurrency", "-c", type=int, default=32)
    bn.add_argument("--pgbench-seconds", type=int, default=5)
    bn.add_argument("--web-workers", type=int, default=1)
    bn.add_argument("--worker-processes", type=int, default=2)
    bn.add_argument("--worker-threads", type=int, default=8)
    bn.add_argument("--open-loop-seconds", type=float, default=10.0,
                    help="how long each point of the open-loop latency curve offers its load")
    bn.add_argument("--ledger-entries", type=int, default=1_000_000,
                    help="ledger entries on one provider when balance and statement reads are timed")
    bn.add_argument("--out-dir", default="bench/results")
    bn.set_defaults(func=cmd_bench)

    ch = sub.add_parser(
        "chaos", help="try to break every guarantee at once: load + kills + restarts + Stripe faults, then check",
        description="Start the fleet on private Postgres and Redis, drive a mixed booking load while killing "
                    "workers, the relay, the scheduler leader and the gateway, restarting Redis and Postgres, "
                    "failing Stripe calls and misdelivering its webhooks and failing provider webhooks; then let "
                    "it settle and check every invariant. Prints a table and writes it as JSON; exits 1 on any "
                    "violation.")
    ch.add_argument("--duration", type=float, default=60.0, help="seconds of load and faults (default 60)")
    ch.add_argument("--seed", type=int, default=1, help="fixes the fault schedule and the load's choices")
    ch.add_argument("--report", default="chaos-report.json", help="where the JSON report goes")
    ch.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis",
                    help="the job broker (rabbitmq: amqp://guest:guest@127.0.0.1:5672, a vhost of its own)")
    ch.add_argument("--clients", type=int, default=6, help="concurrent clients (default 6)")
    ch.add_argument("--settle-timeout", type=float, default=120.0,
                    help="how long the system may take to finish everything after the load (default 120)")
    ch.add_argument("--data-dir", default=None, help="where runs keep servers and logs "
                                                     "(default $TOTEM_DATA_DIR/chaos)")
    ch.set_defaults(func=cmd_chaos)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

