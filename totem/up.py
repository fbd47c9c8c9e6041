"""``totem up``: the whole fleet on one machine. With no DATABASE_URL / REDIS_URL it starts private
Postgres and Redis servers under the data folder (the embedded default), migrates, seeds the demo
catalog, runs the gateway, every worker pool and the scheduler, and stops all of it on Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from totem.cli import POOLS, say, wait_ready
from totem.embedded import PrivatePostgres, PrivateRedis, ServerError, free_port
from totem.fleet import Fleet
from totem.migrate import create_database, migrate
from totem.seed import seed


def up(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    servers: list[PrivatePostgres | PrivateRedis] = []
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    fleet = Fleet(run_dir=data_dir / "run", log_dir=data_dir / "logs", env=env)
    reaped = fleet.reap_stale()
    if reaped:
        say(f"stopped processes left by an earlier run: {', '.join(reaped)}")
    try:
        return _run(args, data_dir, env, fleet, servers, stop)
    except (ServerError, OSError) as exc:
        say(f"error: {exc}")
        return 1
    finally:
        say("stopping the fleet ...")
        fleet.stop()
        for server in reversed(servers):
            server.stop()
        say("stopped")


def _run(args: argparse.Namespace, data_dir: Path, env: dict[str, str], fleet: Fleet,
         servers: list[PrivatePostgres | PrivateRedis], stop: threading.Event) -> int:
    if not env.get("DATABASE_URL"):
        say(f"no DATABASE_URL: starting a private PostgreSQL under {data_dir / 'postgres'} ...")
        pg = PrivatePostgres(data_dir, preferred_port=55432).start()
        servers.append(pg)
        if pg.granted:
            say(f"let the postgres user traverse (o+x): {', '.join(map(str, pg.granted))}")
        create_database(pg.url(), "totem")
        env["DATABASE_URL"] = pg.url("totem")
        say(f"postgres ready on 127.0.0.1:{pg.port} (log: {pg.log_file})")
    if not env.get("REDIS_URL"):
        say(f"no REDIS_URL: starting a private Redis under {data_dir / 'redis'} ...")
        rd = PrivateRedis(data_dir, preferred_port=56379).start()
        servers.append(rd)
        env["REDIS_URL"] = rd.url()
        say(f"redis ready on 127.0.0.1:{rd.port}")
    env.setdefault("PORT", str(args.port))
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(data_dir / "metrics"))
    _fresh_dir(Path(env["PROMETHEUS_MULTIPROC_DIR"]))

    say("migrating ...")
    applied = migrate(env["DATABASE_URL"])
    say(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
    catalog = seed(env["DATABASE_URL"])
    (data_dir / "seed.json").write_text(json.dumps(catalog, indent=2))
    say(f"demo catalog seeded ({data_dir / 'seed.json'})")

    totem = [sys.executable, "-m", "totem.cli"]
    stripe_base = env.get("STRIPE_API_BASE")
    if not stripe_base and not env.get("STRIPE_API_KEY"):  # no Stripe account given: the local fake stands in
        stripe_port = free_port(int(env.get("FAKE_STRIPE_PORT", "12111")))
        stripe_base = env["STRIPE_API_BASE"] = f"http://127.0.0.1:{stripe_port}"
        env.setdefault("FAKE_STRIPE_WEBHOOK_URL", f"http://127.0.0.1:{env['PORT']}/v1/webhooks/stripe")
        fleet.start("fake-stripe", [*totem, "fake-stripe", "--port", str(stripe_port)])
        if not wait_ready(f"{stripe_base}/_fake/health", timeout=30):
            say(f"the fake Stripe did not start; see {fleet.log_dir / 'fake-stripe.log'}")
            return 1
        say(f"no STRIPE_API_KEY: fake Stripe on {stripe_base}, webhooks to {env['FAKE_STRIPE_WEBHOOK_URL']}")
    fleet.start("web", [*totem, "gateway", "--port", env["PORT"], "--workers", str(args.web_workers)])
    metrics_ports: dict[str, int] = {}
    for pool in POOLS:  # every pool on this host exports its metrics on a port of its own
        metrics_ports[pool] = free_port(9191 + len(metrics_ports))
        fleet.start(pool, [*totem, "worker", pool], WORKER_METRICS_PORT=str(metrics_ports[pool]))
    scheduler_port = free_port(9200)
    fleet.start("scheduler", [*totem, "scheduler"], SCHEDULER_METRICS_PORT=str(scheduler_port))
    base = f"http://127.0.0.1:{env['PORT']}"
    if not wait_ready(f"{base}/readyz", timeout=60):
        say(f"the gateway did not become ready; see {fleet.log_dir / 'web.log'}")
        return 1
    _print_welcome(base, catalog, fleet.log_dir, {**metrics_ports, "scheduler": scheduler_port}, stripe_base)
    while not stop.wait(1.0):
        exited = fleet.exited()
        if exited:
            say(f"process(es) exited unexpectedly: {exited}; see {fleet.log_dir}; stopping")
            return 1
    return 0


def _fresh_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for item in path.glob("*.db"):
        item.unlink()


def _print_welcome(base: str, catalog: dict, log_dir: Path, metrics_ports: dict[str, int],  # type: ignore[type-arg]
                   stripe_base: str | None) -> None:
    resource = next(r for r in catalog["resources"] if r["kind"] == "slot" and r["service_ids"])
    body = json.dumps({"kind": "slot", "resource_id": resource["id"], "service_id": resource["service_ids"][0],
                       "start_at": "2031-06-02T10:00:00+02:00",
                       "customer": {"name": "Ada Lovelace", "email": "ada@example.com"}})
    print(f"""
Totem is up: {base}
  API docs:   {base}/schema (OpenAPI: {base}/schema/openapi.json)
  health:     {base}/healthz  {base}/readyz  {base}/metrics
  pool metrics: {'  '.join(f"{pool} http://127.0.0.1:{port}/" for pool, port in metrics_ports.items())}
  logs:       {log_dir}/(web|bookings|payments|payouts|scheduler|fake-stripe).log
  Stripe:     {stripe_base or "api.stripe.com"}

Try it:
  curl -si -X POST {base}/v1/bookings -H 'Content-Type: application/json' \\
       -H "Idempotency-Key: $(date +%s%N)" -d '{body}'
  curl -s {base}/v1/jobs/<job_id from the answer>      # result: booking_id, payment_intent_id, client_secret
  curl -s -X POST {stripe_base or "https://api.stripe.com"}/v1/payment_intents/<payment_intent_id>/confirm \\
       -d payment_method=pm_card_visa                   # pay (the fake then posts the signed webhook)
  curl -s {base}/v1/bookings/<booking_id>              # status: paid, with its payment and audit trail
  curl -s {base}/v1/providers/{resource["provider_id"]}/balance -H 'X-System-Token: {os.environ.get("SYSTEM_TOKEN", "dev-system-token")}'
                                                        # pending / available / in transit / paid out

Ctrl-C stops everything.
""", flush=True)
