"""Property-based (hypothesis): random sequences of pay / refund / cancel / complete / settle / payout
outcome, and for stays (seed 004) approve / decline / check-in / check-out with their security deposit held,
declined, lapsed, claimed (each claim's Stripe event replayed) or released, and disputes (chargebacks) opened
with their funds withdrawn, won or lost (each Stripe event replayed, and stale copies delivered late), under
either dispute liability, applied with the same booking, deposit, dispute, ledger and settlement functions the
workers use, on the real database. After every step: every journal transaction sums to zero; cash = captured
(payments and deposit claims) − refunded − paid out − disputes' net withdrawals (amount + fee, less what a
won one reinstated); cash = what providers are owed + commission − dispute costs, exactly; what providers
are owed or were paid plus the commission less dispute costs = captured − refunded − disputes' net; a
provider never owes on a booking (a dispute takes at most what the booking still owes them); each dispute's
withdrawal and reinstatement is posted once; no booking is paid out twice; no fully refunded booking is paid
out; a deposit is captured and posted at most once, for what was claimed; every booking and deposit is where
the model says; the derived balances (migration 0014) equal the entries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from shared import deposits, disputes, ledger
from shared.booking import transition_booking
from shared.db import QUERIES, use_msgspec_json
from shared.schemas import BookingCommand
from shared.settlement import close_due_periods
from tests.support import make_catalog

SLOTS = 3
STAYS = 2
PRICE = 2501  # odd, with 10 % commission: 250 / 2251, so rounding is exercised
DEPOSIT = 1999
DISPUTE_FEE = 1500

booking = st.integers(0, SLOTS + STAYS - 1)  # slots first, then stays
stay = st.integers(SLOTS, SLOTS + STAYS - 1)
single = st.one_of(  # paying and completing listed twice: histories reach payouts more often
    st.tuples(st.just("pay"), booking), st.tuples(st.just("pay"), booking),
    st.tuples(st.just("refund"), booking, st.integers(1, 100)),
    st.tuples(st.just("complete"), booking), st.tuples(st.just("complete"), booking),
    st.tuples(st.just("cancel"), booking),
    st.tuples(st.just("settle"), st.booleans()),
    st.tuples(st.just("approve"), stay), st.tuples(st.just("decline"), stay),
    st.tuples(st.just("check_in"), stay), st.tuples(st.just("check_out"), stay),
    st.tuples(st.just("authorize"), stay), st.tuples(st.just("card_declined"), stay),
    st.tuples(st.just("lapse"), stay), st.tuples(st.just("claim"), stay, st.integers(1, 100)),
    st.tuples(st.just("release"), stay),
    st.tuples(st.just("dispute"), booking, st.integers(1, 100)), st.tuples(st.just("dispute"), booking, st.just(100)),
    st.tuples(st.just("close_dispute"), st.sampled_from(["won", "lost"])),
    st.tuples(st.just("liability"), st.sampled_from(["provider", "platform"])),
)
# one step in three takes every booking one step along its happy path, so that histories reach completed
# stays, claimed deposits and payouts often; the other steps are the random ones
operations = st.lists(st.integers(0, 2).flatmap(lambda i: st.just(("advance_all",)) if i == 0 else single),
                      min_size=6, max_size=40)


@pytest.fixture(scope="module")
def conn(isolated_database_url: str) -> Any:
    use_msgspec_json()
    with psycopg.connect(isolated_database_url, row_factory=dict_row, autocommit=True) as c:
        yield c


class World:
    """One provider with a few slot bookings and a few request-mode stays with a deposit, driven through the
    booking, deposit and ledger functions; ``status``/``deposit`` are the model the database is checked
    against."""

    def __init__(self, conn: Any, database_url: str) -> None:
        self.conn = conn
        catalog = make_catalog(database_url, price=PRICE)
        self.provider_id = uuid.UUID(catalog.provider_id)
        conn.execute("UPDATE providers SET payout_account = 'acct_prop' WHERE id = %s", (self.provider_id,))
        listing = conn.execute(QUERIES["insert_resource"], {
            "provider_id": self.provider_id, "kind": "stay", "name": "Loft", "nightly_price": PRICE}).fetchone()
        self.bookings: list[uuid.UUID] = []
        self.kind: dict[uuid.UUID, str] = {}
        start = datetime(2035, 1, 1, 10, tzinfo=UTC)
        arrival = datetime(2001, 1, 1, 14, tzinfo=UTC)  # long past: check-in's "not before the first day" holds
        for i in range(SLOTS + STAYS):
            booking_id, kind = uuid.uuid4(), "slot" if i < SLOTS else "stay"
            begins = start + timedelta(hours=i) if kind == "slot" else arrival + timedelta(days=3 * i)
            ends = begins + (timedelta(minutes=30) if kind == "slot" else timedelta(days=2))
            conn.execute(
                """INSERT INTO bookings (id, kind, status, resource_id, provider_id, period, amount, currency,
                                         service_snapshot, customer, hold_expires_at, created_by_job, commission_bps,
                                         booking_mode)
                   VALUES (%s, %s, %s, %s, %s, tstzrange(%s, %s, '[)'), %s, 'EUR', '{}', '{}',
                           now() + interval '1 hour', %s, 1000, %s)""",
                (booking_id, kind, "pending_payment" if kind == "slot" else "requested",
                 catalog.resource_id if kind == "slot" else listing["id"], self.provider_id, begins, ends, PRICE,
                 uuid.uuid4(), "instant" if kind == "slot" else "request"))
            if kind == "stay":
                conn.execute("INSERT INTO booking_deposits (booking_id, provider_id, amount, currency) "
                             "VALUES (%s, %s, %s, 'EUR')", (booking_id, self.provider_id, DEPOSIT))
            self.bookings.append(booking_id)
            self.kind[booking_id] = kind
        self.status = {b: "pending_payment" if self.kind[b] == "slot" else "requested" for b in self.bookings}
        self.deposit = {b: "pending" for b in self.bookings if self.kind[b] == "stay"}
        self.intent = {b: f"pi_dep_{uuid.uuid4().hex}" for b in self.deposit}  # the next authorisation's intent
        self.captured = dict.fromkeys(self.bookings, 0)
        self.claimed = dict.fromkeys(self.bookings, 0)
        self.refunded = dict.fromkeys(self.bookings, 0)
        self.payment_intent: dict[uuid.UUID, str] = {}
        self.opened: dict[uuid.UUID, dict[str, Any]] = {}  # the Dispute as Stripe last sent it
        self.sent: dict[uuid.UUID, list[dict[str, Any]]] = {}  # every dispute event's object, for late copies
        self.days = 0

    def apply(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "settle":
            self.settle(op[1])
            return
        if kind == "close_dispute":  # the oldest open one
            opened = [b for b in self.bookings if self.opened.get(b, {}).get("status") == "needs_response"]
            if opened:
                with self.conn.transaction():
                    (self.dispute_won if op[1] == "won" else self.dispute_lost)(opened[0])
            return
        if kind == "liability":
            self.conn.execute("UPDATE providers SET dispute_liability = %s WHERE id = %s", (op[1], self.provider_id))
            return
        if kind == "advance_all":
            for booking_id in self.bookings:
                with self.conn.transaction():
                    self.advance(booking_id)
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
        self.payment_intent[booking_id] = intent

    def refund(self, booking_id: uuid.UUID, percent: int) -> None:
        remaining = self.captured[booking_id] - self.refunded[booking_id]
        paid_out = self.conn.execute("SELECT 1 FROM payouts WHERE booking_id = %s AND status <> 'failed'",
                                     (booking_id,)).fetchone()
        if remaining <= 0 or paid_out or booking_id in self.opened:
            # (refunds after a payout are clawbacks: out of this model; a disputed charge is not refundable)
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
        if self.status[booking_id] == "paid" and self.kind[booking_id] == "slot":
            self._move(booking_id, "completed")
            ledger.post_maturity(self.conn, booking_id=booking_id, maturity_seconds=0, reason="completed")

    def cancel(self, booking_id: uuid.UUID) -> None:
        """A paid booking cancelled keeps the provider's share matured; a stay's deposit is released (a held
        one by the release job, once Stripe cancelled the authorisation)."""
        if self.status[booking_id] == "paid":
            self._move(booking_id, "cancelled")
            ledger.post_maturity(self.conn, booking_id=booking_id, maturity_seconds=0, reason="cancelled")
        elif self.status[booking_id] == "requested":  # the guest withdraws the request
            self._transition(booking_id, "cancelled")
        else:
            return
        if self.deposit.get(booking_id) in ("pending", "failed", "authorized"):
            released = deposits.record_released(self.conn, booking_id, job_id=None, actor="system", maturity_seconds=0,
                                                from_statuses=(self.deposit[booking_id],))
            assert released
            self.deposit[booking_id] = "released"

    # stays: the owner's answer, arrival and departure, and the deposit (as the jobs and webhooks do it)

    def _transition(self, booking_id: uuid.UUID, status: str) -> None:
        transition_booking(self.conn, BookingCommand(booking_id=booking_id, to_status=status, actor="user"),
                           job_id=uuid.uuid4(), default_hold_ttl_seconds=900)
        self.status[booking_id] = status

    def _completed(self, booking_id: uuid.UUID) -> None:
        """What complete_stay did (or not): completed, with the payable matured, once checked out."""
        if self.status[booking_id] == "checked_out":
            self.status[booking_id] = "completed"

    def advance(self, booking_id: uuid.UUID) -> None:
        """The next step of the happy path (``advance_all`` takes every booking one step: random histories
        then reach completed stays, claims and payouts often); an open dispute is decided first."""
        if self.opened.get(booking_id, {}).get("status") == "needs_response":  # the issuer decides (by booking)
            (self.dispute_won if self.bookings.index(booking_id) % 2 else self.dispute_lost)(booking_id)
            return
        status, deposit = self.status[booking_id], self.deposit.get(booking_id)
        step = {"requested": self.approve, "pending_payment": self.pay, "checked_in": self.check_out,
                "paid": self.complete if self.kind[booking_id] == "slot" else
                self.authorize if deposit == "pending" else self.check_in,
                "checked_out": lambda b: self.claim(b, 40)}.get(status)
        if step is not None:
            step(booking_id)

    def approve(self, booking_id: uuid.UUID) -> None:
        if self.status[booking_id] == "requested":
            self._transition(booking_id, "pending_payment")

    def decline(self, booking_id: uuid.UUID) -> None:
        if self.status[booking_id] == "requested":
            self._transition(booking_id, "declined")
            self.conn.execute(QUERIES["release_unheld_deposit"], {"booking_id": booking_id})
            self.deposit[booking_id] = "released"

    def check_in(self, booking_id: uuid.UUID) -> None:
        if self.status[booking_id] == "paid":
            self._transition(booking_id, "checked_in")

    def check_out(self, booking_id: uuid.UUID) -> None:
        if self.status[booking_id] != "checked_in":
            return
        self._transition(booking_id, "checked_out")
        deposits.on_check_out(self.conn, booking_id, job_id=uuid.uuid4(), actor="system", claim_window_hours=72,
                              maturity_seconds=0)
        if self.deposit[booking_id] == "pending":  # never held: nothing to claim
            self.deposit[booking_id] = "released"
        if self.deposit[booking_id] != "authorized":
            self._completed(booking_id)

    def authorize(self, booking_id: uuid.UUID) -> None:
        """Stripe's answer or its amount_capturable_updated event, any number of times and in any order with
        the other events: a pending (or declined) deposit is held; a lapsed one stays lapsed."""
        lapsed = self.deposit[booking_id] == "failed" and not self.declined_before(booking_id)
        if self.status[booking_id] not in ("paid", "checked_in") and not lapsed:
            return  # a hold is placed between payment and check-out (lapsed: a late copy of its event)
        expected = self.deposit[booking_id] == "pending" or self.declined_before(booking_id)
        changed = deposits.record_authorized(self.conn, booking_id, self.intent[booking_id])
        assert changed == expected, (self.deposit[booking_id], changed)
        if changed:
            self.deposit[booking_id] = "authorized"

    def declined_before(self, booking_id: uuid.UUID) -> bool:
        row = self.conn.execute("SELECT failure_code FROM booking_deposits WHERE booking_id = %s",
                                (booking_id,)).fetchone()
        return self.deposit[booking_id] == "failed" and row["failure_code"] == "card_declined"

    def card_declined(self, booking_id: uuid.UUID) -> None:
        if self.deposit[booking_id] != "pending" or self.status[booking_id] not in ("paid", "checked_in"):
            return
        assert deposits.record_failed(self.conn, booking_id, code="card_declined", message="declined",
                                      payment_intent_id=self.intent[booking_id])
        self.deposit[booking_id] = "failed"
        self.intent[booking_id] = f"pi_dep_{uuid.uuid4().hex}"  # a new try is a new PaymentIntent

    def lapse(self, booking_id: uuid.UUID) -> None:
        """Stripe cancelled the authorisation after ~7 days (payment_intent.canceled, reason expired); the
        hold's own amount_capturable_updated, arriving after that, changes nothing."""
        if self.deposit[booking_id] != "authorized":
            return
        assert deposits.record_failed(self.conn, booking_id, code="authorization_expired", message=None,
                                      payment_intent_id=self.intent[booking_id], from_statuses=("authorized",))
        deposits.complete_stay(self.conn, booking_id, job_id=None, actor="stripe", reason="lapsed",
                               maturity_seconds=0)
        self.deposit[booking_id] = "failed"
        self._completed(booking_id)
        self.authorize(booking_id)

    def claim(self, booking_id: uuid.UUID, percent: int) -> None:
        """The owner claims after check-out: the capture recorded by the job, then Stripe's
        payment_intent.succeeded for it (a replay changes nothing)."""
        if self.deposit[booking_id] != "authorized" or self.status[booking_id] != "checked_out":
            return
        amount = max(1, DEPOSIT * percent // 100)
        for attempt in range(2):
            recorded = deposits.record_claimed(self.conn, booking_id, payment_intent_id=self.intent[booking_id],
                                               amount=amount, reason="damage", job_id=None, actor="user",
                                               maturity_seconds=0)
            assert recorded == (attempt == 0)
        self.deposit[booking_id] = "claimed"
        self.claimed[booking_id] = amount
        self._completed(booking_id)

    def release(self, booking_id: uuid.UUID) -> None:
        if self.deposit[booking_id] != "authorized" or self.status[booking_id] not in ("checked_out", "cancelled"):
            return
        assert deposits.record_released(self.conn, booking_id, job_id=None, actor="user", maturity_seconds=0)
        self.deposit[booking_id] = "released"
        self._completed(booking_id)

    # disputes: Stripe's events, each applied twice, and every earlier one delivered again late

    def _deliver(self, booking_id: uuid.UUID, obj: dict[str, Any]) -> list[str]:
        self.opened[booking_id] = obj
        self.sent.setdefault(booking_id, []).append(obj)
        changes = [c.effect for c in disputes.apply(self.conn, obj)[1]]
        assert disputes.apply(self.conn, obj)[1] == []  # a copy changes nothing
        for stale in self.sent[booking_id][:-1]:
            assert disputes.apply(self.conn, stale)[1] == []  # nor does a late one
        return changes

    def dispute(self, booking_id: uuid.UUID, percent: int) -> None:
        """charge.dispute.created, then funds_withdrawn with the amount and Stripe's fee."""
        remaining = self.captured[booking_id] - self.refunded[booking_id]
        if remaining <= 0 or booking_id in self.opened:
            return
        amount = max(1, remaining * percent // 100)
        obj: dict[str, Any] = {
            "id": f"dp_{uuid.uuid4().hex}", "object": "dispute", "amount": amount, "currency": "eur",
            "charge": f"ch_{self.payment_intent[booking_id]}", "payment_intent": self.payment_intent[booking_id],
            "status": "needs_response", "reason": "fraudulent", "balance_transactions": [],
            "evidence_details": {"due_by": 2_000_000_000}}
        assert self._deliver(booking_id, obj) == ["dispute_opened"]
        withdrawn = {**obj, "balance_transactions": [
            {"id": f"txn_{uuid.uuid4().hex}", "amount": -amount, "fee": DISPUTE_FEE, "net": -amount - DISPUTE_FEE}]}
        assert self._deliver(booking_id, withdrawn) == ["dispute_funds_withdrawn"]

    def dispute_won(self, booking_id: uuid.UUID) -> None:
        obj = self.opened.get(booking_id)
        if obj is None or obj["status"] != "needs_response":
            return
        reinstated = {"id": f"txn_{uuid.uuid4().hex}", "amount": obj["amount"], "fee": 0, "net": obj["amount"]}
        obj = {**obj, "status": "won", "balance_transactions": [*obj["balance_transactions"], reinstated]}
        assert self._deliver(booking_id, obj) == ["dispute_funds_reinstated", "dispute_closed"]

    def dispute_lost(self, booking_id: uuid.UUID) -> None:
        obj = self.opened.get(booking_id)
        if obj is None or obj["status"] != "needs_response":
            return
        assert self._deliver(booking_id, {**obj, "status": "lost"}) == ["dispute_closed"]

    def disputed_net(self) -> int:
        """What disputes took from cash: amount + fee, less what a won one reinstated."""
        return sum(obj["amount"] + DISPUTE_FEE - (obj["amount"] if obj["status"] == "won" else 0)
                   for obj in self.opened.values())

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
        assert conn.execute(QUERIES["ledger_summary_drift"]).fetchall() == []  # derived balances = entries
        ids = self.bookings
        sums = conn.execute(
            """SELECT a.kind, coalesce(sum(e.amount), 0)::bigint AS total
               FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
               JOIN ledger_accounts a ON a.id = e.account_id
               WHERE t.booking_id = ANY(%s) GROUP BY a.kind""", (ids,)).fetchall()
        total = {row["kind"]: row["total"] for row in sums}
        paid_out = conn.execute("SELECT coalesce(sum(amount), 0)::bigint AS n FROM payouts "
                                "WHERE booking_id = ANY(%s) AND status = 'paid'", (ids,)).fetchone()["n"]
        captured = sum(self.captured.values()) + sum(self.claimed.values())
        refunded = sum(self.refunded.values())
        disputed = self.disputed_net()
        assert total.get("platform_cash", 0) == captured - refunded - paid_out - disputed
        owed = -(total.get("provider_pending", 0) + total.get("provider_available", 0)
                 + total.get("payouts_in_transit", 0))
        commission, costs = -total.get("platform_commission", 0), total.get("platform_dispute_costs", 0)
        assert total.get("platform_cash", 0) == owed + commission - costs
        assert owed + paid_out + commission - costs == captured - refunded - disputed
        unpaid = conn.execute(
            """SELECT t.booking_id, sum(e.amount)::bigint AS debit FROM ledger_transactions t
               JOIN ledger_entries e ON e.transaction_id = t.id
               JOIN ledger_accounts a ON a.id = e.account_id AND a.kind IN ('provider_pending', 'provider_available')
               WHERE t.booking_id = ANY(%s) GROUP BY t.booking_id""", (ids,)).fetchall()
        assert all(row["debit"] <= 0 for row in unpaid), unpaid  # a provider never owes on a booking
        posted = conn.execute(
            """SELECT booking_id, array_agg(kind ORDER BY id) AS kinds FROM ledger_transactions
               WHERE booking_id = ANY(%s) AND kind LIKE 'dispute%%' GROUP BY booking_id""", (ids,)).fetchall()
        assert {row["booking_id"]: row["kinds"] for row in posted} == {
            b: ["dispute_withdrawal", *(["dispute_reinstatement"] if obj["status"] == "won" else [])]
            for b, obj in self.opened.items()}
        [balance] = ledger.balances(conn, self.provider_id) or [ledger.Balance("EUR", 0, 0, 0, 0)]
        assert balance.pending + balance.available + balance.in_transit == owed and balance.paid_out == paid_out
        payouts = conn.execute("SELECT booking_id, count(*) AS n, sum(amount) AS amount FROM payouts "
                               "WHERE booking_id = ANY(%s) AND status <> 'failed' GROUP BY booking_id",
                               (ids,)).fetchall()
        for row in payouts:
            assert row["n"] == 1  # never paid out twice
            booking_id = row["booking_id"]
            money_in = self.captured[booking_id] + self.claimed[booking_id]
            assert self.refunded[booking_id] < money_in  # never a fully refunded booking
            assert row["amount"] <= money_in - self.refunded[booking_id]
        claims = conn.execute(
            """SELECT t.booking_id, count(DISTINCT t.id) AS n, sum(e.amount) AS cash
               FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
               JOIN ledger_accounts a ON a.id = e.account_id AND a.kind = 'platform_cash'
               WHERE t.booking_id = ANY(%s) AND t.kind = 'deposit_capture' GROUP BY t.booking_id""",
            (ids,)).fetchall()
        assert {row["booking_id"]: (row["n"], row["cash"]) for row in claims} == {
            b: (1, amount) for b, amount in self.claimed.items() if amount}  # each claim captured and posted once
        rows = conn.execute("SELECT id, status FROM bookings WHERE id = ANY(%s)", (ids,)).fetchall()
        assert {row["id"]: row["status"] for row in rows} == self.status
        rows = conn.execute("SELECT booking_id, status, claimed_amount FROM booking_deposits "
                            "WHERE booking_id = ANY(%s)", (ids,)).fetchall()
        assert {row["booking_id"]: row["status"] for row in rows} == self.deposit


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
    event(f"deposits claimed: {sum(1 for amount in world.claimed.values() if amount)}")
    event(f"disputes: {sorted({obj['status'] for obj in world.opened.values()})}")
    event(f"stays completed: {sum(1 for b, s in world.status.items() if world.kind[b] == 'stay' and s == 'completed')}")


def test_the_capture_split_never_loses_a_cent() -> None:
    for amount in (1, 99, 2501, 10**9 + 7):
        for bps in (0, 1, 999, 1000, 1250, 10_000):
            provider, commission = ledger.split(amount, bps)
            assert provider + commission == amount and 0 <= commission <= amount
