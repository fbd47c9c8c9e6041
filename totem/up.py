"""``totem up``: the whole fleet on one machine. With no DATABASE_URL / REDIS_URL it starts private
Postgres and Redis servers under the data folder (the embedded default), migrates, seeds the demo
catalog, runs the gateway, every worker pool and the scheduler, and stops all of it on Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

from shared.registry import POOLS
from totem.console import say
from totem.embedded import PrivatePostgres, PrivateRedis, ServerError, free_port
from totem.fleet import Fleet, FleetError
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

    stale = Fleet(env=env, log_dir=data_dir / "logs", run_dir=data_dir / "run", fake_stripe=False,
                  gateway_port=args.port)
    reaped = stale.reap_stale()
    if reaped:
        say(f"stopped processes left by an earlier run: {', '.join(reaped)}")
    fleet: Fleet | None = None
    try:
        fleet = _prepare(args, data_dir, env, servers)
        return _run(args, data_dir, fleet, stop)
    except (ServerError, FleetError, OSError) as exc:
        say(f"error: {exc}")
        return 1
    finally:
        say("stopping the fleet ...")
        if fleet is not None:
            fleet.stop()
        for server in reversed(servers):
            server.stop()
        say("stopped")


def _prepare(args: argparse.Namespace, data_dir: Path, env: dict[str, str],
             servers: list[PrivatePostgres | PrivateRedis]) -> Fleet:
    """Servers (private ones unless URLs are given), migrations and the demo catalog; then the fleet's
    ports and environment."""
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
    for name, value in _dev_secrets(data_dir).items():
        env.setdefault(name, value)
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(data_dir / "metrics"))
    env.setdefault("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")  # dev: webhook receivers on this machine are fine
    _fresh_dir(Path(env["PROMETHEUS_MULTIPROC_DIR"]))

    say("migrating ...")
    applied = migrate(env["DATABASE_URL"])
    say(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
    catalog = seed(env["DATABASE_URL"])
    (data_dir / "seed.json").write_text(json.dumps(catalog, indent=2))
    say(f"demo catalog seeded ({data_dir / 'seed.json'})")
    use_fake = not env.get("STRIPE_API_BASE") and not env.get("STRIPE_API_KEY")  # no Stripe account given
    return Fleet(env=env, log_dir=data_dir / "logs", run_dir=data_dir / "run", fake_stripe=use_fake,
                 mail_dir=data_dir / "mail", smtp_port=free_port(2525) if not env.get("SMTP_URL") else 0,
                 host="0.0.0.0", well_known_ports=True, gateway_port=args.port,  # noqa: S104 - reachable from outside
                 stripe_port=free_port(int(env.get("FAKE_STRIPE_PORT", "12111"))) if use_fake else 0)


def _run(args: argparse.Namespace, data_dir: Path, fleet: Fleet, stop: threading.Event) -> int:
    if fleet.fake_stripe:
        say(f"no STRIPE_API_KEY: fake Stripe on {fleet.stripe_url}, "
            f"webhooks to {fleet.env['FAKE_STRIPE_WEBHOOK_URL']}")
    if fleet.smtp_port:
        say(f"no SMTP_URL: the SMTP sink on {fleet.env['SMTP_URL']} keeps every email in {fleet.mail_dir}")
    say(f"starting the gateway on {fleet.base_url}, pools {', '.join(p.name for p in POOLS)}, the scheduler "
        f"and the relay (logs in {fleet.log_dir}) ...")
    fleet.start_all(web_workers=args.web_workers)
    base = fleet.base_url
    catalog = json.loads((data_dir / "seed.json").read_text())
    _print_welcome(base, catalog, fleet.log_dir, fleet.metrics_ports,
                   fleet.stripe_url or fleet.env.get("STRIPE_API_BASE"),
                   str(fleet.mail_dir) if fleet.smtp_port else fleet.env.get("SMTP_URL", ""))
    Supervisor(fleet).run(stop)
    return 0


class Supervisor:
    """Keeps the fleet running until Ctrl-C/SIGTERM: a process that exits is started again after a backoff
    (1, 2, 4 ... 30 s; back to 1 s once it has run a minute), with a line saying so."""

    STABLE_SECONDS = 60.0
    MAX_DELAY = 30.0

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.restarts: dict[str, int] = {}
        self.started: dict[str, float] = dict.fromkeys(fleet.procs, time.monotonic())
        self.due: dict[str, float] = {}

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(0.5):
            self.tick(time.monotonic())

    def tick(self, now: float) -> None:
        for name, code in self.fleet.exited().items():
            if name in self.due:
                continue
            ran = now - self.started.get(name, now)
            count = 1 if ran >= self.STABLE_SECONDS else self.restarts.get(name, 0) + 1
            self.restarts[name] = count
            delay = min(self.MAX_DELAY, 2.0 ** (count - 1))
            self.due[name] = now + delay
            say(f"{name} exited (code {code}) after {ran:.0f}s; restarting it in {delay:g}s (restart {count}); "
                f"see {self.fleet.log_dir / f'{name}.log'}")
        for name, at in list(self.due.items()):
            if at <= now:
                del self.due[name]
                proc = self.fleet.restart(name)
                self.started[name] = now
                say(f"{name} restarted (pid {proc.pid})")


def _dev_secrets(data_dir: Path) -> dict[str, str]:
    """This data folder's SYSTEM_TOKEN and TOKEN_SECRET: random, made on first start, kept (mode 0600) in
    ``secrets.json`` so customer tokens and links stay valid across restarts."""
    path = data_dir / "secrets.json"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(json.dumps({"SYSTEM_TOKEN": secrets.token_urlsafe(32),
                                    "TOKEN_SECRET": secrets.token_urlsafe(32)}))
        say(f"made this folder's SYSTEM_TOKEN and TOKEN_SECRET: {path}")
    stored: dict[str, str] = json.loads(path.read_text())
    return stored


def _fresh_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for item in path.glob("*.db"):
        item.unlink()


def _print_welcome(base: str, catalog: dict[str, Any], log_dir: Path, metrics_ports: dict[str, int],
                   stripe_base: str | None, mail: str) -> None:
    resource = next(r for r in catalog["resources"] if r["kind"] == "slot" and r["service_ids"])
    widget = next(t["token"] for t in catalog["public_tokens"] if t["provider_id"] == resource["provider_id"])
    owner = next(o["email"] for o in catalog["owners"] if o["provider_id"] == resource["provider_id"]
                 and o["role"] == "owner")
    slug = next(p["slug"] for p in catalog["providers"] if p["id"] == resource["provider_id"])
    public = (os.environ.get("PUBLIC_URL") or base).rstrip("/")  # where people open the pages
    body = json.dumps({"kind": "slot", "resource_id": resource["id"], "service_id": resource["service_ids"][0],
                       "start_at": "2031-06-02T10:00:00+02:00",
                       "customer": {"name": "Ada Lovelace", "email": "ada@example.com"}})
    print(f"""
Totem is up: {base}
  API docs:   {base}/schema (OpenAPI: {base}/schema/openapi.json)
  health:     {base}/healthz  {base}/readyz  {base}/metrics
  pool metrics: {'  '.join(f"{pool} http://127.0.0.1:{port}/" for pool, port in metrics_ports.items())}
  logs:       {log_dir}/({'|'.join(["web", *(p.name for p in POOLS), "scheduler", "relay", "fake-stripe",
                                     "smtp-sink"])}).log
  Stripe:     {stripe_base or "api.stripe.com"}
  email:      {mail}   (every message the system sends, as .eml files)

Open it in a browser:
  booking widget: {public}/widget/{slug}?token={widget}
  owner console:  {public}/console   sign in as {owner} (the link arrives in the email folder above)

Try it (as the booking widget: its public token, from seed.json):
  W='Authorization: Bearer {widget}'
  curl -si -X POST {base}/v1/bookings -H "$W" -H 'Content-Type: application/json' \\
       -H "Idempotency-Key: $(date +%s%N)" -d '{body}'
  curl -s -H "$W" {base}/v1/jobs/<job_id from the answer>
                          # result: booking_id, payment_intent_id, client_secret, customer_token
  curl -s -X POST {stripe_base or "https://api.stripe.com"}/v1/payment_intents/<payment_intent_id>/confirm \\
       -d payment_method=pm_card_visa                   # pay (the fake then posts the signed webhook)
  curl -s -H 'Authorization: Bearer <customer_token>' {base}/v1/bookings/<booking_id>
                          # as the customer: status paid, with its payment and audit trail
Sign in as the salon's owner ({owner}):
  curl -s -X POST {base}/v1/auth/magic-links -H 'Content-Type: application/json' -d '{{"email": "{owner}"}}'
                          # the link arrives in the mail folder above; open it, press "Sign in"
  curl -s -H 'Authorization: Bearer <session_token>' {base}/v1/providers/{resource["provider_id"]}/balance
                          # pending / available / in transit / paid out

Ctrl-C stops everything.
""", flush=True)
