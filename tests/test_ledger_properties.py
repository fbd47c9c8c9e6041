"""Property-based (hypothesis): random sequences of pay / refund / cancel / complete / settle / payout
outcome, applied with the same ledger and settlement functions the workers use, on the real database.
After every sequence: every journal transaction sums to zero; cash = captured − refunded − paid out;
what providers are owed or were paid plus the platform's commission = captured − refunded; no booking is
paid out twice; no fully refunded booking is paid out."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from shared import ledger
from shared.db import QUERIES, use_msgspec_json
from shared.settlement import close_due_periods
from tests.support import make_catalog

BOOKINGS = 3
PRICE = 2501  # odd, with 10 % commission: 250 / 2251, so rounding is exercised

booking = st.integers(0, BOOKINGS - 1)
operations = st.lists(st.one_of(  # paying and completing listed twice: histories reach payouts more often
    st.tuples(st.just("pay"), booking), st.tuples(st.just("pay"), booking),
    st.tuples(st.just("refund"), booking, st.integers(1, 100)),
    st.tuples(st.just("complete"), booking), st.tuples(st.just("complete"), booking),
    st.tuples(st.just("cancel"), booking),
    st.tuples(st.just("settle"), st.booleans()),
), min_size=3, max_size=30)


@pytest.fixture(scope="module")
def conn(isolated_database_url: str) -> Any:
    use_msgspec_json()
    with psycopg.connect(isolated_database_url, row_factory=dict_row, autocommit=True) as c:
        yield c


class World:
    """One provider with a few bookings, driven through the ledger functions."""

    def __init__(self, conn: Any, database_url: str) -> None:
        self.conn = conn
        catalog = make_catalog(database_url, price=PRICE)
        self.provider_id = uuid.UUID(catalog.provider_id)
        conn.execute("UPDATE providers SET payout_account = 'acct_prop' WHERE id = %s", (self.provider_id,))
        self.bookings: list[uuid.UUID] = []
        start = datetime(2035, 1, 1, 10, tzinfo=UTC)
        for i in range(BOOKINGS):
            booking_id = uuid.uuid4()
            conn.execute(
                """INSERT INTO bookings (id, kind, status, resource_id, provider_id, period, amount, currency,
                                         service_snapshot, customer, hold_expires_at, created_by_job, commission_bps)
                   VALUES (%s, 'slot', 'pending_payment', %s, %s, tstzrange(%s, %s, '[)'), %s, 'EUR', '{}', '{}',
                           now() + interval '1 hour', %s, 1000)""",
                (booking_id, catalog.resource_id, self.provider_id, start + timedelta(hours=i),
                 start + timedelta(hours=i, minutes=30), PRICE, uuid.uuid4()))
            self.bookings.append(booking_id)
        self.status = dict.fromkeys(self.bookings, "pending_payment")
        self.captured = dict.fromkeys(self.bookings, 0)
        self.refunded = dict.fromkeys(self.bookings, 0)
        self.days = 0

    def apply(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "settle":
            self.settle(op[1])
            return
        booking_id = self.bookings[op[1]]
        with self.conn.transaction():
            getattr(self, kind)(booking_id, *op[2:])

    def _move(self, booking_id: uuid.UUID, status: str) -> None:
        self.conn.execute("UPDATE bookings SET status = %s WHERE id = %s", (status, booking_id))
        self.status[booking_id] = status

    def pay(self, booking_id: uuid.UUID) -> None:
        if self.status[booking_id] != "pending_payment":
            return
        intent = f"pi_{uuid.uuid4().hex}"
        self.conn.execute("INSERT INTO payments (booking_id, payment_intent_id, amount, currency, status, "
                          "succeeded_at) VALUES (%s, %s, %s, 'EUR', 'succeeded', now())",
                          (booking_id, intent, PRICE))
        ledger.post_capture(self.conn, booking_id=booking_id, payment_intent_id=intent, charge_id=f"ch_{intent}",
                            amount=PRICE, currency="EUR")
        self._move(booking_id, "paid")
        self.captured[booking_id] = PRICE

    def refund(self, booking_id: uuid.UUID, percent: int) -> None:
        remaining = self.captured[booking_id] - self.refunded[booking_id]
        paid_out = self.conn.execute("SELECT 1 FROM payouts WHERE booking_id = %s AND status <> 'failed'",
                                     (booking_id,)).fetchone()
        if remaining <= 0 or paid_out:  # (refunds after a payout are clawbacks: out of this model)
            return
        amount = max(1, remaining * percent // 100)
        row = self.conn.execute(
            "INSERT INTO refunds (booking_id, payment_id, kind, amount, currency, status, stripe_refund_id) "
            "SELECT %s, p.id, 'external', %s, 'EUR', 'succeeded', %s FROM payments p "
            "WHERE p.booking_id = %s AND p.status = 'succeeded' RETURNING id",
            (booking_id, amount, f"re_{uuid.uuid4().hex}", booking_id)).fetchone()
        ledger.post_refund(self.conn, refund_id=row["id"], booking_id=booking_id, stripe_refund_id=None, amount=amount)
        self.refunded[booking_id] += amount

    def complete(self, booking_id: uuid.UUID) -> None:
        if self.status[booking_id] == "paid":
            self._move(booking_id, "completed")
            ledger.post_maturity(self.conn, booking_id=booking_id, maturity_seconds=0, reason="completed")

    def cancel(self, booking_id: uuid.UUID) -> None:
        if self.status[booking_id] == "paid":
            self._move(booking_id, "cancelled")
            ledger.post_maturity(self.conn, booking_id=booking_id, maturity_seconds=0, reason="cancelled")

    def settle(self, transfers_succeed: bool) -> None:
        self.days += 1
        closed, _ = close_due_periods(self.conn, now=datetime.now(UTC) + timedelta(days=self.days),
                                      provider_id=self.provider_id)
        for period in closed:
            for payout_id in period.payouts:
                with self.conn.transaction():
                    if transfers_succeed:
                        row = self.conn.execute(QUERIES["mark_payout_paid"],
                                                {"id": payout_id, "transfer_id": f"tr_{uuid.uuid4().hex}"}).fetchone()
                        ledger.post_payout(self.conn, "paid", row, transfer_id="tr_x")
                    else:
                        row = self.conn.execute(QUERIES["mark_payout_failed"],
                                                {"id": payout_id, "reason": "refused"}).fetchone()
                        ledger.post_payout(self.conn, "returned", row)

    def check(self) -> None:
        conn = self.conn
        assert conn.execute(QUERIES["ledger_trial_balance"]).fetchall() == []
        ids = self.bookings
        sums = conn.execute(
            """SELECT a.kind, coalesce(sum(e.amount), 0)::bigint AS total
               FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
               JOIN ledger_accounts a ON a.id = e.account_id
               WHERE t.booking_id = ANY(%s) GROUP BY a.kind""", (ids,)).fetchall()
        total = {row["kind"]: row["total"] for row in sums}
        paid_out = conn.execute("SELECT coalesce(sum(amount), 0)::bigint AS n FROM payouts "
                                "WHERE booking_id = ANY(%s) AND status = 'paid'", (ids,)).fetchone()["n"]
        captured, refunded = sum(self.captured.values()), sum(self.refunded.values())
        assert total.get("platform_cash", 0) == captured - refunded - paid_out
        owed = -(total.get("provider_pending", 0) + total.get("provider_available", 0)
                 + total.get("payouts_in_transit", 0))
        assert owed + paid_out - total.get("platform_commission", 0) == captured - refunded
        [balance] = ledger.balances(conn, self.provider_id) or [ledger.Balance("EUR", 0, 0, 0, 0)]
        assert balance.pending + balance.available + balance.in_transit == owed and balance.paid_out == paid_out
        payouts = conn.execute("SELECT booking_id, count(*) AS n, sum(amount) AS amount FROM payouts "
                               "WHERE booking_id = ANY(%s) AND status <> 'failed' GROUP BY booking_id",
                               (ids,)).fetchall()
        for row in payouts:
            assert row["n"] == 1  # never paid out twice
            booking_id = row["booking_id"]
            assert self.refunded[booking_id] < self.captured[booking_id]  # never a fully refunded booking
            assert row["amount"] <= self.captured[booking_id] - self.refunded[booking_id]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_random_money_histories_keep_the_ledger_whole(conn: Any, isolated_database_url: str,
                                                      ops: list[tuple[Any, ...]]) -> None:
    world = World(conn, isolated_database_url)
    for op in ops:
        world.apply(op)
        world.check()
    world.settle(True)  # whatever happened, a final settlement keeps every rule
    world.check()
    paid = conn.execute("SELECT count(*) AS n FROM payouts WHERE provider_id = %s",
                        (world.provider_id,)).fetchone()["n"]
    event(f"payouts: {min(paid, 2)}{'+' if paid > 2 else ''}")
    event(f"refunds: {'some' if any(world.refunded.values()) else 'none'}")


def test_the_capture_split_never_loses_a_cent() -> None:
    for amount in (1, 99, 2501, 10**9 + 7):
        for bps in (0, 1, 999, 1000, 1250, 10_000):
            provider, commission = ledger.split(amount, bps)
            assert provider + commission == amount and 0 <= commission <= amount
