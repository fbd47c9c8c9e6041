"""The ledger's derived balances (migration 0014) are provably the entries' sums: the balance and the
statement read from them give exactly what the entries alone give (the queries they replaced are kept here
as the reference), under concurrent postings too; the drift check finds any difference and the rebuild
removes it; and the balance check at commit, now once per ledger transaction, still refuses an entry
added to a transaction it already checked. The entries' copies of their account's provider and their
transaction's fields (migration 0015) are made on every insert path and checked by the same drift check;
postings for one account never wait on each other's derived balances."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared.db import QUERIES, use_msgspec_json
from tests.support import ROOT, make_catalog

# provider_balances and statement_opening as they were, computed from entries alone
REFERENCE_BALANCES = """
WITH accounts AS (
  SELECT id, kind, currency FROM ledger_accounts WHERE provider_id = %(provider_id)s
), sums AS (
  SELECT a.currency,
         coalesce(-sum(e.amount) FILTER (WHERE a.kind = 'provider_pending'
                                            OR (a.kind = 'provider_available' AND e.amount < 0
                                                AND e.available_at > now())), 0)::bigint AS pending,
         coalesce(-sum(e.amount) FILTER (WHERE a.kind = 'provider_available'
                                            AND (e.amount > 0 OR e.available_at <= now())), 0)::bigint AS available,
         coalesce(-sum(e.amount) FILTER (WHERE a.kind = 'payouts_in_transit'), 0)::bigint AS in_transit
  FROM accounts a JOIN ledger_entries e ON e.account_id = a.id
  GROUP BY a.currency
)
SELECT s.currency, s.pending, s.available, s.in_transit,
       coalesce((SELECT sum(e.amount) FROM accounts a
                 JOIN ledger_entries e ON e.account_id = a.id
                 JOIN ledger_transactions t ON t.id = e.transaction_id AND t.kind = 'payout_paid'
                 WHERE a.kind = 'payouts_in_transit' AND a.currency = s.currency), 0)::bigint AS paid_out
FROM sums s
ORDER BY s.currency"""
REFERENCE_OPENING = """
SELECT e.currency, coalesce(-sum(e.amount), 0)::bigint AS balance
FROM ledger_accounts a JOIN ledger_entries e ON e.account_id = a.id
WHERE a.provider_id = %(provider_id)s AND a.kind IN ('provider_pending', 'provider_available', 'payouts_in_transit')
  AND (e.created_at, e.id) < (%(from)s, %(from_id)s)
GROUP BY e.currency"""
# the page as it was before the entries carried copies (migration 0015): each row's transaction looked up
REFERENCE_PAGE = """
SELECT e.id, e.created_at, e.available_at, -e.amount AS amount, e.currency, a.kind AS account, e.transaction_id,
       t.kind, t.booking_id, t.payout_id, t.description
FROM ledger_accounts a JOIN ledger_entries e ON e.account_id = a.id
JOIN ledger_transactions t ON t.id = e.transaction_id
WHERE a.provider_id = %(provider_id)s AND a.kind IN ('provider_pending', 'provider_available', 'payouts_in_transit')
  AND (e.created_at, e.id) >= (%(from)s, %(from_id)s) AND e.created_at < %(to)s
ORDER BY e.created_at, e.id LIMIT %(limit)s"""


@pytest.fixture(scope="module")
def conn(isolated_database_url: str) -> Any:
    use_msgspec_json()
    with psycopg.connect(isolated_database_url, row_factory=dict_row, autocommit=True) as c:
        yield c


def _post(conn: Any, key: str, kind: str, entries: list[tuple[str, str | None, int, datetime | None]]) -> None:
    conn.execute(QUERIES["ledger_post"], {
        "key": key, "kind": kind, "booking_id": None, "payout_id": None, "external_ref": None,
        "description": None, "entries": Jsonb([
            {"kind": k, "provider_id": p, "currency": "EUR", "amount": amount,
             **({"available_at": at.isoformat()} if at else {})} for k, p, amount, at in entries])})


def _history(conn: Any, provider: str, rng: random.Random, count: int, tag: str = "") -> None:
    """Captures, maturities (some still maturing, some matured), payouts paid and returned."""
    now = datetime.now(UTC)
    for i in range(count):
        n = f"{tag}{i}"
        amount = rng.randint(100, 9999)
        commission = amount // 10
        _post(conn, f"{provider}:cap:{n}", "capture", [("platform_cash", None, amount, None),
                                                      ("provider_pending", provider, commission - amount, None),
                                                      ("platform_commission", None, -commission, None)])
        if rng.random() < 0.8:
            share = amount - commission
            matures = now + timedelta(days=rng.choice([-3, -1, 1, 7]))
            _post(conn, f"{provider}:mat:{n}", "maturity", [("provider_pending", provider, share, None),
                                                           ("provider_available", provider, -share, matures)])
            if rng.random() < 0.5:
                _post(conn, f"{provider}:init:{n}", "payout_initiated", [
                    ("provider_available", provider, share, None), ("payouts_in_transit", provider, -share, None)])
                paid = rng.random() < 0.7
                _post(conn, f"{provider}:done:{n}", "payout_paid" if paid else "payout_returned", [
                    ("payouts_in_transit", provider, share, None),
                    ("platform_cash" if paid else "provider_available", None if paid else provider, -share, None)])


def _provider(database_url: str) -> str:
    return make_catalog(database_url).provider_id


def test_the_balance_from_the_derived_totals_is_the_balance_from_the_entries(
        conn: Any, isolated_database_url: str) -> None:
    provider = _provider(isolated_database_url)
    _history(conn, provider, random.Random(3), 60)
    params = {"provider_id": provider}
    assert conn.execute(QUERIES["provider_balances"], params).fetchall() == \
        conn.execute(REFERENCE_BALANCES, params).fetchall()
    assert conn.execute(QUERIES["ledger_summary_drift"]).fetchall() == []


def test_a_statement_opens_with_the_sum_of_the_entries_before_it_and_pages_them_in_order(
        conn: Any, isolated_database_url: str) -> None:
    provider = _provider(isolated_database_url)
    _history(conn, provider, random.Random(5), 30)
    # entries over several days, as a history has them (created_at set explicitly: the bench's way)
    with conn.transaction():
        account = conn.execute("SELECT ledger_account('provider_pending', %s, 'EUR') AS id", (provider,)).fetchone()
        cash = conn.execute("SELECT ledger_account('platform_cash', NULL, 'EUR') AS id").fetchone()
        for day in range(1, 6):
            at = datetime.now(UTC) - timedelta(days=day, hours=day)
            txn = conn.execute("INSERT INTO ledger_transactions (idempotency_key, kind, fingerprint, created_at) "
                               "VALUES (%s, 'capture', sha256(%s::bytea), %s) RETURNING id",
                               (f"old:{provider}:{day}", f"old:{day}", at)).fetchone()
            conn.execute("INSERT INTO ledger_entries (transaction_id, account_id, amount, currency, created_at) "
                         "VALUES (%s, %s, %s, 'EUR', %s), (%s, %s, %s, 'EUR', %s)",
                         (txn["id"], account["id"], -100 * day, at, txn["id"], cash["id"], 100 * day, at))
    rng = random.Random(7)
    now = datetime.now(UTC)
    entries = conn.execute("SELECT created_at, id FROM ledger_entries WHERE provider_id = %s", (provider,)).fetchall()
    for i in range(50):
        # a period's start (from_id 0), or the position just past an entry, as the next page starts (entries of
        # one transaction share their created_at: the id orders them)
        if i % 2:
            start, from_id = now - timedelta(days=6) + timedelta(seconds=rng.randint(0, 6 * 86400)), 0
        else:
            entry = rng.choice(entries)
            start, from_id = entry["created_at"], entry["id"] + 1
        params = {"provider_id": provider, "from": start, "from_id": from_id,
                  "to": start + timedelta(days=rng.choice([1, 3])), "limit": rng.choice([3, 50, 1001])}
        assert conn.execute(QUERIES["statement_opening"], params).fetchall() == \
            conn.execute(REFERENCE_OPENING, params).fetchall()
        assert conn.execute(QUERIES["provider_statement"], params).fetchall() == \
            conn.execute(REFERENCE_PAGE, params).fetchall()
    assert conn.execute(QUERIES["ledger_summary_drift"]).fetchall() == []


def test_concurrent_postings_for_one_provider_keep_the_derived_totals_exact(
        conn: Any, isolated_database_url: str) -> None:
    provider = _provider(isolated_database_url)
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            with psycopg.connect(isolated_database_url, row_factory=dict_row, autocommit=True) as own:
                _history(own, provider, random.Random(100 + w), 25, tag=f"w{w}-")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert conn.execute(QUERIES["ledger_summary_drift"]).fetchall() == []
    params = {"provider_id": provider}
    assert conn.execute(QUERIES["provider_balances"], params).fetchall() == \
        conn.execute(REFERENCE_BALANCES, params).fetchall()


def test_the_drift_check_finds_a_tampered_summary_and_the_rebuild_restores_it(
        conn: Any, isolated_database_url: str) -> None:
    provider = _provider(isolated_database_url)
    _history(conn, provider, random.Random(11), 10)
    conn.execute("UPDATE ledger_account_totals SET amount = amount + 1 WHERE account_id = "
                 "(SELECT id FROM ledger_accounts WHERE provider_id = %s AND kind = 'provider_pending')", (provider,))
    conn.execute("UPDATE ledger_account_days SET entries = entries + 1 WHERE account_id = "
                 "(SELECT id FROM ledger_accounts WHERE provider_id = %s AND kind = 'provider_pending')", (provider,))
    drift = conn.execute(QUERIES["ledger_summary_drift"]).fetchall()
    assert {row["scope"] for row in drift} == {"account", "day"}
    conn.execute(QUERIES["ledger_rebuild_summary"])
    assert conn.execute(QUERIES["ledger_summary_drift"]).fetchall() == []


def test_an_entry_added_to_a_transaction_already_checked_is_checked_again(
        conn: Any, isolated_database_url: str) -> None:
    provider = _provider(isolated_database_url)
    key = f"late-entry:{uuid.uuid4()}"
    with pytest.raises(psycopg.errors.CheckViolation, match="does not balance"), conn.transaction():
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the check of the posting fires now, and passes
        _post(conn, key, "capture", [("platform_cash", None, 500, None),
                                     ("provider_pending", provider, -500, None)])
        conn.execute("SET CONSTRAINTS ALL DEFERRED")
        txn = conn.execute("SELECT id FROM ledger_transactions WHERE idempotency_key = %s", (key,)).fetchone()
        conn.execute("INSERT INTO ledger_entries (transaction_id, account_id, amount, currency) "
                     "VALUES (%s, ledger_account('platform_cash', NULL, 'EUR'), 1, 'EUR')", (txn["id"],))
    assert conn.execute("SELECT 1 FROM ledger_transactions WHERE idempotency_key = %s", (key,)).fetchone() is None


def test_an_entry_in_another_currency_than_its_account_is_refused(conn: Any, isolated_database_url: str) -> None:
    provider = _provider(isolated_database_url)
    with pytest.raises(psycopg.errors.CheckViolation, match="currency"), conn.transaction():
        txn = conn.execute("INSERT INTO ledger_transactions (idempotency_key, kind, fingerprint) "
                           "VALUES (%s, 'capture', sha256('x'::bytea)) RETURNING id", (f"cur:{uuid.uuid4()}",)
                           ).fetchone()
        conn.execute("INSERT INTO ledger_entries (transaction_id, account_id, amount, currency) VALUES "
                     "(%s, ledger_account('platform_cash', NULL, 'EUR'), 5, 'USD'), "
                     "(%s, ledger_account('provider_pending', %s, 'EUR'), -5, 'USD')",
                     (txn["id"], txn["id"], provider))


def test_an_operator_checks_the_ledger_with_one_command(conn: Any, isolated_database_url: str) -> None:
    provider = _provider(isolated_database_url)
    _history(conn, provider, random.Random(13), 5)
    env = {**os.environ, "DATABASE_URL": isolated_database_url}
    clean = subprocess.run([sys.executable, "-m", "totem.cli", "ledger-check"], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=60, check=False)
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout) == {"unbalanced_transactions": [], "summary_drift": []}
    conn.execute("UPDATE ledger_account_totals SET paid_out = paid_out + 7 WHERE account_id = "
                 "(SELECT id FROM ledger_accounts WHERE provider_id = %s AND kind = 'provider_pending')", (provider,))
    drifted = subprocess.run([sys.executable, "-m", "totem.cli", "ledger-check"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=False)
    assert drifted.returncode == 1
    assert json.loads(drifted.stdout)["summary_drift"]
    rebuilt = subprocess.run([sys.executable, "-m", "totem.cli", "ledger-check", "--rebuild"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=False)
    assert rebuilt.returncode == 0, rebuilt.stdout


def test_an_entry_inserted_any_way_carries_its_account_and_transaction_and_the_check_finds_a_wrong_copy(
        conn: Any, isolated_database_url: str) -> None:
    provider = _provider(isolated_database_url)
    booking = None
    with conn.transaction():  # by hand, not through ledger_post: the copies come from the rows themselves
        txn = conn.execute("INSERT INTO ledger_transactions (idempotency_key, kind, fingerprint, booking_id, "
                           "description) VALUES (%s, 'capture', sha256('y'::bytea), %s, 'by hand') RETURNING id",
                           (f"copy:{uuid.uuid4()}", booking)).fetchone()
        conn.execute("INSERT INTO ledger_entries (transaction_id, account_id, amount, currency, transaction_kind) "
                     "VALUES "
                     "(%s, ledger_account('platform_cash', NULL, 'EUR'), 5, 'EUR', 'refund'), "
                     "(%s, ledger_account('provider_pending', %s, 'EUR'), -5, 'EUR', NULL)",
                     (txn["id"], txn["id"], provider))
    rows = conn.execute("SELECT provider_id, transaction_kind, description FROM ledger_entries "
                        "WHERE transaction_id = %s ORDER BY id", (txn["id"],)).fetchall()
    assert rows == [{"provider_id": None, "transaction_kind": "capture", "description": "by hand"},
                    {"provider_id": uuid.UUID(provider), "transaction_kind": "capture", "description": "by hand"}]
    assert conn.execute(QUERIES["ledger_summary_drift"]).fetchall() == []
    # a copy changed behind the append-only trigger's back (a restore gone wrong) is found
    with psycopg.connect(isolated_database_url, autocommit=True) as own, own.transaction():
        own.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only")
        own.execute("UPDATE ledger_entries SET description = 'changed' WHERE transaction_id = %s AND amount < 0",
                    (txn["id"],))
        own.execute("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only")
    drift = conn.execute(QUERIES["ledger_summary_drift"]).fetchall()
    assert [(row["scope"], row["entries_count"]) for row in drift] == [("entry_copy", 1)]
    with psycopg.connect(isolated_database_url, autocommit=True) as own, own.transaction():
        own.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only")
        own.execute("UPDATE ledger_entries SET description = 'by hand' WHERE transaction_id = %s", (txn["id"],))
        own.execute("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only")
    assert conn.execute(QUERIES["ledger_summary_drift"]).fetchall() == []


def test_a_posting_does_not_wait_for_another_posting_to_the_same_account(
        conn: Any, isolated_database_url: str) -> None:
    provider = _provider(isolated_database_url)
    capture = [("platform_cash", None, 700, None), ("provider_pending", provider, -700, None)]
    _post(conn, f"first:{uuid.uuid4()}", "capture", capture)  # the accounts and their first stripe exist
    with psycopg.connect(isolated_database_url, row_factory=dict_row, autocommit=True) as first, \
            psycopg.connect(isolated_database_url, row_factory=dict_row, autocommit=True) as second:
        with first.transaction():
            _post(first, f"hold:{uuid.uuid4()}", "capture", capture)  # holds a stripe of the account until commit
            # a wait on the first's summary row would fail here instead of hanging
            second.execute("SET lock_timeout = '2s'")
            with second.transaction():
                _post(second, f"pass:{uuid.uuid4()}", "capture", capture)
        stripes = conn.execute("SELECT count(*) AS n FROM ledger_account_totals WHERE account_id = "
                               "ledger_account('provider_pending', %s, 'EUR')", (provider,)).fetchone()
    assert stripes["n"] == 2
    assert conn.execute(QUERIES["ledger_summary_drift"]).fetchall() == []


def test_the_statement_page_columns_are_the_route_entry_fields_in_order(
        conn: Any, isolated_database_url: str) -> None:
    # the route builds each StatementEntry from the page's tuple by position (gateway/routes/money.py)
    from gateway.routes.money import StatementEntry

    provider = _provider(isolated_database_url)
    cur = conn.execute(QUERIES["provider_statement"], {"provider_id": provider, "from": datetime.now(UTC),
                                                       "from_id": 0, "to": datetime.now(UTC), "limit": 1})
    assert [c.name for c in cur.description or []] == list(StatementEntry.__struct_fields__[:-1])
    assert StatementEntry.__struct_fields__[-1] == "running_balance"
