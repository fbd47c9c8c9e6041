"""Ledger figures, each against a baseline measured in the same run:

* posting: ``ledger_post`` (idempotency key, fingerprint, accounts, entries, balance check at commit)
  against the same rows inserted directly (the same triggers apply), both with pgbench;
* reads at ``entries`` ledger entries on one provider's accounts: the balance, and a statement page of the
  most entries a page holds (the opening balance and the page, the two statements the route runs) for
  one-day windows spread over the history, for the first page of the whole history and for the last day.

The history is generated set-based in SQL (a few seconds per million entries): bookings paid, matured,
paid out, as the workers post them. Per-row triggers are skipped while it is written (the bench's own
database), then every generated transaction is proven balanced in one pass and the derived balances are
rebuilt from the entries, and proven equal to them, before anything is measured.

``python -m bench.ledger [--entries N] [--seconds S]`` runs it standalone on a scratch database.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from bench.pgbench import render
from bench.rows import one_row
from gateway.routes.money import MAX_STATEMENT_PAGE
from shared.db import QUERIES
from totem.migrate import create_database, drop_database, migrate

STATEMENT_ENTRIES = 100_000  # what run.py's older entry points fill to
PGBENCH_CLIENTS = 16
PROVIDER_ENTRIES_PER_BOOKING = 6  # capture 1, maturity 2, payout initiated 2, payout paid 1
PRICE, PROVIDER_SHARE, MATURITY = 2500, 2250, timedelta(days=7)
HISTORY_DAYS = 365
SEED_CHUNK = 50_000  # bookings per seeding statement (progress is printed between chunks)
_PROVIDER_ENTRIES = ("SELECT count(*) FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id "
                     "WHERE a.provider_id = %s")


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- posting ----------------------------------------------------------------------------------------------

def _entries(provider_id: str) -> str:
    return ("'[{\"kind\": \"platform_cash\", \"provider_id\": null, \"currency\": \"EUR\", \"amount\": 2500},"
            f" {{\"kind\": \"provider_pending\", \"provider_id\": \"{provider_id}\", \"currency\": \"EUR\","
            " \"amount\": -2250},"
            " {\"kind\": \"platform_commission\", \"provider_id\": null, \"currency\": \"EUR\","
            " \"amount\": -250}]'::jsonb")


def write_scripts(directory: Path, provider_id: str, accounts: dict[str, int]) -> dict[str, Path]:
    """ledger_post.sql: a capture through the named query the workers run; ledger_direct.sql: the same
    transaction and entries inserted by hand (account ids known, no key check, no fingerprint)."""
    directory.mkdir(parents=True, exist_ok=True)
    # the backend's pid keeps keys apart between runs (each run's clients count :n from 0 again)
    key = "('bench:' || pg_backend_pid() || ':' || CAST(:client_id AS text) || ':' || CAST(:n AS text))"
    post = render("ledger_post", {"key": key, "kind": "'capture'", "booking_id": "NULL", "payout_id": "NULL",
                                  "external_ref": "NULL", "description": "NULL", "entries": _entries(provider_id)})
    direct = [
        "BEGIN;",
        "INSERT INTO ledger_transactions (idempotency_key, kind, fingerprint) "
        f"VALUES ({key} || '-direct', 'capture', sha256({key}::bytea)) RETURNING id AS txn \\gset",
        "INSERT INTO ledger_entries (transaction_id, account_id, amount, currency) VALUES "
        f"(CAST(:txn AS bigint), {accounts['platform_cash']}, 2500, 'EUR'), "
        f"(CAST(:txn AS bigint), {accounts['provider_pending']}, -2250, 'EUR'), "
        f"(CAST(:txn AS bigint), {accounts['platform_commission']}, -250, 'EUR');",
        "COMMIT;",
    ]
    paths = {"ledger_post": directory / "ledger_post.sql", "ledger_direct": directory / "ledger_direct.sql"}
    paths["ledger_post"].write_text("\\set n :n + 1\n" + post + "\n")
    paths["ledger_direct"].write_text("\\set n :n + 1\n" + "\n".join(direct) + "\n")
    return paths


def accounts(url: str, provider_id: str) -> dict[str, int]:
    kinds = ("platform_cash", "provider_pending", "platform_commission", "provider_available", "payouts_in_transit")
    with psycopg.connect(url, autocommit=True) as conn:
        return {kind: one_row(conn, "SELECT ledger_account(%s, %s, 'EUR')",
                              (kind, None if kind.startswith("platform_") else provider_id))[0]
                for kind in kinds}


def pgbench(url: str, script: Path, seconds: int, *, per_statement: bool = False) -> dict[str, Any]:
    parsed = urlparse(url)
    binary = shutil.which("pgbench") or "/usr/lib/postgresql/15/bin/pgbench"
    argv = [binary, "-n", "-M", "prepared", "-f", str(script), "-c", str(PGBENCH_CLIENTS), "-j", "2",
            "-T", str(seconds), "-D", "n=0", "-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 5432),
            "-U", parsed.username or "postgres", parsed.path.lstrip("/")]
    if per_statement:
        argv.insert(1, "-r")
    say(f"pgbench {script.name}: {PGBENCH_CLIENTS} clients for {seconds}s ...")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed: {proc.stderr[-2000:]}")
    tps = re.search(r"tps = ([0-9.]+)", proc.stdout)
    if tps is None:
        raise RuntimeError(f"pgbench printed no tps line: {proc.stdout[-2000:]}")
    latency = re.search(r"latency average = ([0-9.]+) ms", proc.stdout)
    out: dict[str, Any] = {"script": script.name, "tps": float(tps.group(1)),
                           "latency_avg_ms": float(latency.group(1)) if latency else None}
    if per_statement:
        out["statements"] = proc.stdout.split("statement latencies in milliseconds", 1)[-1].strip()
    return out


# -- the history ------------------------------------------------------------------------------------------

# One booking's life as the workers post it, each stage at its offset from the capture; a stage still in the
# future at seeding time has not happened yet (recent bookings are pending, or matured but not yet paid out).
_STAGES = """(VALUES ('capture', interval '0'), ('maturity', interval '1 day'),
                      ('payout_initiated', interval '9 days'), ('payout_paid', interval '9 days 1 minute'))"""
_SEED_TRANSACTIONS = f"""
INSERT INTO ledger_transactions (idempotency_key, kind, fingerprint, description, created_at)
SELECT 'seed:' || s.kind || ':' || g, s.kind, sha256(('seed:' || s.kind || ':' || g)::bytea), 'bench history',
       %(first)s::timestamptz + g * %(step)s::interval + s.offset_
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g, {_STAGES} AS s (kind, offset_)
WHERE %(first)s::timestamptz + g * %(step)s::interval + s.offset_ < now()
"""
# Entry templates per stage: (stage, account, amount, matures); debits +, credits -. Written with their
# copies of the account's provider and the transaction's fields (the trigger that makes them is skipped).
_SEED_ENTRIES = """
INSERT INTO ledger_entries (transaction_id, account_id, amount, currency, available_at, created_at, provider_id,
                            transaction_kind, booking_id, payout_id, description)
SELECT t.id, x.account_id, x.amount, 'EUR',
       CASE WHEN x.matures THEN t.created_at + %(maturity)s::interval ELSE t.created_at END, t.created_at,
       CASE WHEN x.account_id IN (%(pending)s, %(available)s, %(transit)s) THEN %(provider)s::uuid END,
       t.kind, t.booking_id, t.payout_id, t.description
FROM ledger_transactions t
JOIN (VALUES ('capture', %(cash)s::bigint, %(price)s::bigint, false),
             ('capture', %(pending)s, -%(share)s, false),
             ('capture', %(commission)s, %(share)s - %(price)s, false),
             ('maturity', %(pending)s, %(share)s, false),
             ('maturity', %(available)s, -%(share)s, true),
             ('payout_initiated', %(available)s, %(share)s, false),
             ('payout_initiated', %(transit)s, -%(share)s, false),
             ('payout_paid', %(transit)s, %(share)s, false),
             ('payout_paid', %(cash)s, -%(share)s, false)) AS x (kind, account_id, amount, matures)
  ON x.kind = t.kind
WHERE t.idempotency_key LIKE 'seed:%%' AND t.id BETWEEN %(first_id)s AND %(last_id)s
"""


def seed(url: str, provider_id: str, entries: int) -> int:
    """Give the provider's accounts about ``entries`` entries of history (a year of bookings, each paid,
    matured and paid out as its time comes), set-based; returns how many the provider has."""
    ids = accounts(url, provider_id)
    # the last days' bookings have not reached every stage yet (not matured or not paid out: about 1.3 % of
    # the entries a whole life would have), so a few more bookings than a whole life needs: at least ``entries``
    bookings = max(1, -(-entries * 103 // (100 * PROVIDER_ENTRIES_PER_BOOKING)))
    step = timedelta(days=HISTORY_DAYS) / bookings
    with psycopg.connect(url, autocommit=True) as conn:
        have = int(one_row(conn, _PROVIDER_ENTRIES, (provider_id,))[0])
        first = one_row(conn, "SELECT now()")[0] - timedelta(days=HISTORY_DAYS)
    started = time.perf_counter()
    for lo in range(1 + have // PROVIDER_ENTRIES_PER_BOOKING, bookings + 1, SEED_CHUNK):
        hi = min(bookings, lo + SEED_CHUNK - 1)
        with psycopg.connect(url) as conn, conn.transaction():
            # the bench's own database: per-row triggers (the balance check at commit, the derived balances)
            # are skipped while the history is written; balance and derived sums are proven below
            conn.execute("SET LOCAL session_replication_role = replica")
            first_id = one_row(conn, "SELECT coalesce(max(id), 0) + 1 FROM ledger_transactions")[0]
            conn.execute(_SEED_TRANSACTIONS, {"first": first, "step": step, "lo": lo, "hi": hi})
            last_id = one_row(conn, "SELECT coalesce(max(id), 0) FROM ledger_transactions")[0]
            conn.execute(_SEED_ENTRIES, {"maturity": MATURITY, "price": PRICE, "share": PROVIDER_SHARE,
                                         "cash": ids["platform_cash"], "commission": ids["platform_commission"],
                                         "pending": ids["provider_pending"], "available": ids["provider_available"],
                                         "transit": ids["payouts_in_transit"], "first_id": first_id,
                                         "provider": provider_id,
                                         "last_id": last_id})
        say(f"ledger: history {hi * PROVIDER_ENTRIES_PER_BOOKING:,} / {bookings * PROVIDER_ENTRIES_PER_BOOKING:,} "
            f"provider entries ({time.perf_counter() - started:.0f}s)")
    with psycopg.connect(url, autocommit=True) as conn:
        unbalanced = conn.execute(QUERIES["ledger_trial_balance"]).fetchall()
        if unbalanced:
            raise RuntimeError(f"seeded ledger does not balance: {unbalanced[:5]}")
        _rebuild_derived(conn)
        conn.execute("VACUUM ANALYZE ledger_entries")
        conn.execute("VACUUM ANALYZE ledger_transactions")
        total = int(one_row(conn, _PROVIDER_ENTRIES, (provider_id,))[0])
    say(f"ledger: {total:,} entries on the provider, balanced, in {time.perf_counter() - started:.0f}s")
    return total


def _rebuild_derived(conn: psycopg.Connection[Any]) -> None:
    """Derived balances (when the schema keeps any) rebuilt from the entries, and proven equal to them."""
    if "ledger_rebuild_summary" in QUERIES:
        conn.execute(QUERIES["ledger_rebuild_summary"])
    if "ledger_summary_drift" in QUERIES:
        drift = conn.execute(QUERIES["ledger_summary_drift"]).fetchall()
        if drift:
            raise RuntimeError(f"derived balances differ from the entries: {drift[:5]}")


def live_postings(url: str, provider_id: str, count: int) -> None:
    """A few postings the ordinary way after the history, as the workers post them now."""
    with psycopg.connect(url, autocommit=True) as conn:
        for n in range(count):
            conn.execute(QUERIES["ledger_post"], {
                "key": f"live:{uuid.uuid4()}:{n}", "kind": "capture", "booking_id": None, "payout_id": None,
                "external_ref": None, "description": None, "entries": Jsonb([
                    {"kind": "platform_cash", "provider_id": None, "currency": "EUR", "amount": PRICE},
                    {"kind": "provider_pending", "provider_id": provider_id, "currency": "EUR",
                     "amount": -PROVIDER_SHARE},
                    {"kind": "platform_commission", "provider_id": None, "currency": "EUR",
                     "amount": PROVIDER_SHARE - PRICE}])})


# -- reads ------------------------------------------------------------------------------------------------

def _timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 2)


def read_times(url: str, provider_id: str, runs: int = 200, seed_: int = 16) -> dict[str, Any]:
    """p50/p99 of the balance and of a statement page (opening + page, as the route runs them): one-day
    windows at random over the history, and the first page of the whole history."""
    rng = random.Random(seed_)
    # a session as the gateway's pool opens it (UTC: a named zone's conversion per timestamp cost the client
    # 3-4 ms a full page), reading as the route reads (gateway/routes/money.py: the page as tuples, in binary)
    with psycopg.connect(url, row_factory=dict_row, autocommit=True, options="-c TimeZone=UTC") as conn:
        span = one_row(conn, "SELECT min(created_at) AS lo, max(created_at) AS hi FROM ledger_entries")
        lo, hi = span["lo"], span["hi"]

        def statement(start: datetime, end: datetime) -> None:
            params = {"provider_id": provider_id, "from": start, "from_id": 0, "to": end,
                      "limit": MAX_STATEMENT_PAGE + 1}
            conn.execute(QUERIES["statement_opening"], params).fetchall()
            conn.cursor(row_factory=tuple_row, binary=True).execute(QUERIES["provider_statement"], params).fetchall()

        def day_window() -> None:
            start = lo + (hi - lo) * rng.random()
            statement(start, start + timedelta(days=1))

        balance = _timed(lambda: conn.execute(QUERIES["provider_balances"], {"provider_id": provider_id}).fetchall(),
                         runs)
        days = _timed(day_window, runs)
        whole = _timed(lambda: statement(lo, hi + timedelta(days=1)), max(10, runs // 10))
        last = _timed(lambda: statement(hi - timedelta(days=1), hi + timedelta(days=1)), max(10, runs // 10))
    both = days + whole + last
    legacy = {name: {"p50_ms": round(statistics.median(times), 2), "p99_ms": _p(times, 0.99)}
              for name, times in (("statement_last_day", last), ("statement_all_first_page", whole),
                                  ("balance", balance))}
    return {"balance_p50_ms": round(statistics.median(balance), 2), "balance_p99_ms": _p(balance, 0.99),
            "statement_p50_ms": round(statistics.median(both), 2), "statement_p99_ms": _p(both, 0.99),
            "statement_day_p99_ms": _p(days, 0.99), "statement_first_page_p99_ms": _p(whole, 0.99),
            "statement_last_day_p99_ms": _p(last, 0.99), **legacy}


def explain(url: str, provider_id: str) -> dict[str, str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the reads, for the profile."""
    out = {}
    with psycopg.connect(url, autocommit=True) as conn:
        hi = one_row(conn, "SELECT max(created_at) FROM ledger_entries")[0]
        params = {"provider_id": provider_id, "from": hi - timedelta(days=120), "from_id": 0,
                  "to": hi - timedelta(days=119), "limit": MAX_STATEMENT_PAGE + 1}
        for name in ("provider_balances", "statement_opening", "provider_statement"):
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + QUERIES[name], params).fetchall()
            out[name] = "\n".join(r[0] for r in rows)
    return out


# -- the whole measurement --------------------------------------------------------------------------------

def provider_of(url: str, resources: list[dict[str, str]]) -> str:
    """The provider whose accounts the bench posts to: the resources' provider, else a new one."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        if resources:
            return str(one_row(conn, "SELECT provider_id FROM resources WHERE id = %s",
                               (resources[0]["resource_id"],))["provider_id"])
        return str(one_row(conn, QUERIES["insert_provider"], {
            "slug": f"ledger-bench-{uuid.uuid4().hex[:6]}", "name": "Ledger Bench", "time_zone": "Europe/Berlin",
            "currency": "EUR", "commission_bps": 1000, "hold_ttl_seconds": None,
            "cancellation_policy": Jsonb([])})["id"])


def run(url: str, work: Path, seconds: int, resources: list[dict[str, str]], *, entries: int,
        read_runs: int = 200) -> dict[str, Any]:
    provider_id = provider_of(url, resources)
    scripts = write_scripts(work / "pgbench", provider_id, accounts(url, provider_id))
    # interleaved, twice each: the first run on a fresh ledger is not favoured or penalised by its order
    runs: dict[str, list[float]] = {"ledger_post": [], "ledger_direct": []}
    for _ in range(2):
        for name in runs:
            runs[name].append(pgbench(url, scripts[name], seconds)["tps"])
    post, direct = statistics.mean(runs["ledger_post"]), statistics.mean(runs["ledger_direct"])
    total = seed(url, provider_id, entries)
    live_postings(url, provider_id, 200)
    reads = {k: v for k, v in read_times(url, provider_id, read_runs).items() if not isinstance(v, dict)}
    return {"entries": total, "post_tps": round(post, 1), "direct_tps": round(direct, 1),
            "post_over_direct": round(post / direct, 3), **reads}


# kept for bench/run.py until it calls run()
def fill(url: str, provider_id: str, progress: Callable[[str], None]) -> int:
    progress(f"ledger: history up to {STATEMENT_ENTRIES} provider entries")
    return seed(url, provider_id, STATEMENT_ENTRIES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=5, help="each pgbench run")
    parser.add_argument("--runs", type=int, default=200, help="timed runs of each read")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN (ANALYZE, BUFFERS) of the reads")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)
    name = f"totem_ledger_bench_{uuid.uuid4().hex[:8]}"
    create_database(args.admin_url, name)
    url = args.admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate(url)
        work = Path("/tmp") / name  # noqa: S108 - pgbench scripts of a scratch run
        result = run(url, work, args.seconds, [], entries=args.entries, read_runs=args.runs)
        if args.explain:
            for query, plan in explain(url, provider_of_entries(url)).items():
                print(f"--- {query}\n{plan}", file=sys.stderr)
        print(json.dumps(result, indent=2))
        return 0
    finally:
        if args.keep:
            say(f"kept database {name}")
        else:
            drop_database(args.admin_url, name)


def provider_of_entries(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        return str(one_row(conn, "SELECT provider_id FROM ledger_accounts WHERE provider_id IS NOT NULL "
                                 "GROUP BY provider_id ORDER BY count(*) DESC LIMIT 1")[0])


if __name__ == "__main__":
    sys.exit(main())
