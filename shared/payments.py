"""Payments: the cancellation refund policy, and applying Stripe events to bookings, idempotently and in
any order of arrival.

The rules, each enforced where it cannot be bypassed:

* One active payment per booking (``payments_one_active_per_booking``); a success is final
  (``payments_succeeded_is_final``), so an old ``payment_failed`` delivered late changes nothing.
* A booking is paid by the event that turns its payment to succeeded, while it is ``pending_payment``.
* **Late success** (the booking expired or was cancelled before the money arrived, or was already
  marked paid another way): we refund it in full, automatically. We never re-confirm: the slot was
  released when the hold ended and may belong to someone else by now, and a customer who saw "expired"
  should not find a booking appear later.
* We issue at most one refund per booking (``refunds_one_issued_per_booking``); refunds Stripe reports that
  we did not issue are recorded as ``external``. Refunds come from their own events (``refund.*``, applied by
  ``shared.refund_events``); ``charge.refunded`` only moves the payment's ``amount_refunded``.
* Every event's application is written to ``stripe_event_effects``, including "no change" and why.

Lock order everywhere: booking, then payment, then refund.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from shared import connect, deposits, disputes, ledger, refund_events
from shared.booking import transition_booking
from shared.db import QUERIES
from shared.errors import DomainError, StripeEventMalformed
from shared.jobs import ClaimedJob
from shared.notifications import emit
from shared.registry import DEPOSIT_AUTHORIZE, PAYMENT_CANCEL_INTENT, REFUND_ISSUE
from shared.schemas import BookingCommand, BookingTransitioned, CancelIntentJob, RefundJob, RefundPlanned

HANDLED_EVENTS = frozenset({"payment_intent.succeeded", "payment_intent.payment_failed",
                            "payment_intent.canceled", "payment_intent.amount_capturable_updated",
                            "charge.refunded", "refund.created", "refund.updated", "refund.failed",
                            "account.updated"}) | disputes.EVENTS


# --- cancellation policy -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefundQuote:
    amount: int
    refund_percent: int
    window: dict[str, Any] | None
    hours_before_start: float


def quote_refund(policy: list[dict[str, Any]], start_at: datetime, now: datetime, paid: int) -> RefundQuote:
    """The refund a policy grants when cancelling at ``now``: the window with the largest
    ``min_hours_before_start`` that is still met (none once the booking has started → 0). The amount is
    ``paid × percent / 100`` rounded down to the minor unit, so a refund never exceeds the policy's share
    (a 50 % refund of 2,501 cents is 1,250)."""
    hours_before = (start_at - now).total_seconds() / 3600
    met = [w for w in policy if hours_before >= w["min_hours_before_start"]]
    window = max(met, key=lambda w: w["min_hours_before_start"], default=None)
    percent = int(window["refund_percent"]) if window else 0
    return RefundQuote(amount=paid * percent // 100, refund_percent=percent, window=window,
                       hours_before_start=math.floor(hours_before * 100) / 100)


def cancel_booking(conn: psycopg.Connection[Any], command: BookingCommand, job: ClaimedJob,
                   now: datetime, maturity_seconds: float) -> BookingTransitioned:
    """Cancel a booking; if it was paid, stage the refund its policy grants (issued by a refund.issue job)
    and record amount and window in the audit row. What the provider keeps is earned now: it matures for
    payout (the refund, when it settles, comes off it). Runs in the caller's transaction."""
    booking = conn.execute(QUERIES["lock_booking"], {"id": command.booking_id}).fetchone()
    payment = None
    if booking is not None and booking["status"] == "paid":
        payment = conn.execute(QUERIES["succeeded_payment"], {"booking_id": booking["id"]}).fetchone()
    plan: RefundPlanned | None = None
    if booking is not None and payment is not None:
        quote = quote_refund(booking["cancellation_policy"], booking["start_at"], now, payment["amount"])
        amount = min(quote.amount, payment["amount"] - payment["amount_refunded"])
        plan = RefundPlanned(refund_id=None, amount=amount, currency=payment["currency"],
                             refund_percent=quote.refund_percent, window=quote.window,
                             hours_before_start=quote.hours_before_start, status="none")
    if plan is not None and payment is not None and plan.amount > 0:
        refund_id = _stage_refund(conn, job, booking_id=command.booking_id, payment_id=payment["id"],
                                  kind="cancellation", amount=plan.amount, currency=plan.currency,
                                  policy=msgspec.to_builtins(plan))
        plan = msgspec.structs.replace(plan, refund_id=refund_id, status="pending" if refund_id else "none")
    detail = {"refund": msgspec.to_builtins(plan)} if plan else None
    transitioned = transition_booking(conn, command, job_id=job.id, detail=detail)
    if transitioned.from_status == "pending_payment":  # nobody should pay for it any more
        for open_payment in conn.execute(QUERIES["open_payments"], {"booking_id": command.booking_id}).fetchall():
            job.follow_up(conn, PAYMENT_CANCEL_INTENT,
                          CancelIntentJob(payment_intent_id=open_payment["payment_intent_id"]))
    if transitioned.from_status == "paid":
        ledger.post_maturity(conn, booking_id=command.booking_id, maturity_seconds=maturity_seconds,
                             reason="cancelled: the provider keeps what the policy does not refund")
    return msgspec.structs.replace(transitioned, refund=plan)


def _stage_refund(conn: psycopg.Connection[Any], job: ClaimedJob, *, booking_id: uuid.UUID,
                  payment_id: uuid.UUID, kind: str, amount: int, currency: str,
                  policy: dict[str, Any] | None) -> uuid.UUID | None:
    row: dict[str, Any] | None = conn.execute(QUERIES["insert_refund"], {
        "booking_id": booking_id, "payment_id": payment_id, "kind": kind, "amount": amount, "currency": currency,
        "policy": Jsonb(policy) if policy is not None else None}).fetchone()
    if row is None:
        return None  # this booking already has the one refund we issue
    job.follow_up(conn, REFUND_ISSUE, RefundJob(refund_id=row["id"]))
    refund_id: uuid.UUID = row["id"]
    return refund_id


# --- Stripe events ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Effect:
    effect: str
    booking_id: uuid.UUID | None = None
    detail: dict[str, Any] | None = None


class AppliedEvent(msgspec.Struct):
    """Result of a stripe.apply_event job."""

    event_id: str
    type: str
    status: str
    effects: list[dict[str, Any]]


class _Intent(msgspec.Struct):
    """What every payment_intent.* event we apply must carry (more is read where present)."""

    id: str
    amount: int
    currency: str


class _Charge(msgspec.Struct):
    id: str
    amount: int
    currency: str
    amount_refunded: int


class _Refund(msgspec.Struct):
    """A Refund (``refund.*``): since API 2022-11-15 the only place a refund's details come from."""

    id: str
    amount: int
    status: str
    payment_intent: str | None = None


class _Account(msgspec.Struct):
    id: str
    charges_enabled: bool
    payouts_enabled: bool


_REQUIRED_FIELDS: dict[str, type[msgspec.Struct]] = {
    "payment_intent.succeeded": _Intent, "payment_intent.payment_failed": _Intent,
    "payment_intent.canceled": _Intent, "payment_intent.amount_capturable_updated": _Intent,
    "charge.refunded": _Charge,
    "refund.created": _Refund, "refund.updated": _Refund, "refund.failed": _Refund,
    **dict.fromkeys(disputes.EVENTS, disputes.Dispute),
    "account.updated": _Account,
}


def _event_object(event: dict[str, Any]) -> dict[str, Any]:
    """The event's object, checked for the fields its type must carry: Stripe's payload is outside data,
    and a malformed one is a permanent failure (retrying cannot add the field), not a KeyError retried
    until the job gives up."""
    obj = (event["payload"].get("data") or {}).get("object")
    if not isinstance(obj, dict):
        raise StripeEventMalformed(f"{event['type']} event {event['event_id']}: data.object is not an object")
    try:
        msgspec.convert(obj, _REQUIRED_FIELDS[event["type"]])
    except msgspec.ValidationError as exc:
        raise StripeEventMalformed(f"{event['type']} event {event['event_id']}: {exc}") from None
    return obj


def apply_event(conn: psycopg.Connection[Any], job: ClaimedJob, event_id: str, *, maturity_seconds: float = 86_400.0,
                authorize_before_hours: float = 48.0) -> AppliedEvent | DomainError:
    """Apply one stored event once (its row is locked; an applied event is left alone). A malformed
    event is set aside (ignored, with an effect row saying why) and the job fails with
    STRIPE_EVENT_MALFORMED, in one transaction. Events about a security deposit's PaymentIntent (metadata
    ``purpose: deposit``) go to ``shared.deposits``; a stay paid by this event with its arrival near gets
    its deposit held at once (``authorize_before_hours``)."""
    event = conn.execute(QUERIES["lock_stripe_event"], {"event_id": event_id}).fetchone()
    if event is None:
        return AppliedEvent(event_id=event_id, type="", status="missing", effects=[])
    if event["status"] != "received":
        return AppliedEvent(event_id=event_id, type=event["type"], status=event["status"], effects=[])
    apply = _APPLIERS.get(event["type"])
    try:
        obj = _event_object(event) if apply else {}
        if apply and _is_deposit(obj):
            effects = _deposit_event(conn, job, event["type"], obj, maturity_seconds)
        else:
            effects = apply(conn, job, event_id, obj) if apply else [
                Effect("ignored", detail={"reason": "not handled"})]
    except StripeEventMalformed as malformed:
        _record_effects(conn, event_id, [Effect("ignored", detail={"reason": "malformed",
                                                                   "error": malformed.detail})])
        conn.execute(QUERIES["mark_event_ignored"], {"event_id": event_id})
        return malformed
    _record_effects(conn, event_id, effects)
    for paid in (e.booking_id for e in effects if e.effect == "booking_paid" and e.booking_id):
        for staged in deposits.stage_due_authorizations(conn, before_hours=authorize_before_hours,
                                                        max_attempts=job.max_attempts, booking_id=paid, by="stripe"):
            job.follow_ups.append((DEPOSIT_AUTHORIZE, staged))
    conn.execute(QUERIES["mark_event_applied"], {"event_id": event_id})
    return AppliedEvent(event_id=event_id, type=event["type"], status="applied",
                        effects=[{"effect": e.effect, "booking_id": str(e.booking_id) if e.booking_id else None,
                                  "detail": e.detail} for e in effects])


def _record_effects(conn: psycopg.Connection[Any], event_id: str, effects: list[Effect]) -> None:
    for effect in effects:
        conn.execute(QUERIES["insert_event_effect"], {
            "event_id": event_id, "booking_id": effect.booking_id, "effect": effect.effect,
            "detail": Jsonb(effect.detail or {})})


def _booking_id(obj: dict[str, Any]) -> uuid.UUID | None:
    raw = (obj.get("metadata") or {}).get("booking_id")
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None


def _intent_terms(obj: dict[str, Any], booking_id: uuid.UUID) -> dict[str, Any]:
    return {"booking_id": booking_id, "payment_intent_id": obj["id"], "amount": obj["amount"],
            "currency": str(obj["currency"]).upper()}


def _payment_succeeded(conn: psycopg.Connection[Any], job: ClaimedJob, event_id: str,
                       obj: dict[str, Any]) -> list[Effect]:
    booking_id = _booking_id(obj)
    booking = conn.execute(QUERIES["lock_booking"], {"id": booking_id}).fetchone() if booking_id else None
    if booking is None:
        return [Effect("unknown_booking", detail={"payment_intent_id": obj["id"]})]
    return _apply_success(conn, job, event_id, booking, intent_id=obj["id"], amount=obj["amount"],
                          received=int(obj.get("amount_received") or obj["amount"]),
                          currency=str(obj["currency"]).upper(), charge_id=obj.get("latest_charge"),
                          source="payment_intent.succeeded", payment_method=_payment_method(obj))


def _apply_success(conn: psycopg.Connection[Any], job: ClaimedJob, event_id: str, booking: dict[str, Any], *,
                   intent_id: str, amount: int, received: int, currency: str, charge_id: str | None,
                   source: str, payment_method: str | None) -> list[Effect]:
    """The payment succeeded (said by its intent's event, or by its charge's when that came first): record
    it, post the capture, and pay the booking if it was waiting (else refund it: the late rule)."""
    changed = conn.execute(QUERIES["record_payment_succeeded"], {
        "booking_id": booking["id"], "payment_intent_id": intent_id, "amount": amount, "currency": currency,
        "charge_id": charge_id}).fetchone()
    if changed is None:
        return [Effect("no_change", booking["id"], {"reason": "payment already recorded as succeeded"})]
    ledger.post_capture(conn, booking_id=booking["id"], payment_intent_id=intent_id, charge_id=charge_id,
                        amount=received, currency=currency)
    refund_events.post_after_capture(conn, changed["id"])  # refunds whose events came before the capture's
    if (received, currency) != (booking["amount"], booking["currency"]):
        return [Effect("amount_mismatch", booking["id"], {
            "expected": booking["amount"], "received": received, "currency": currency})]
    if booking["status"] == "pending_payment":
        transition_booking(conn, BookingCommand(booking_id=booking["id"], to_status="paid", actor="stripe",
                                                reason=source),
                           job_id=job.id, detail={"event_id": event_id, "payment_intent_id": intent_id})
        deposits.save_card(conn, booking["id"], payment_method)  # a stay's deposit is held on this card later
        return [Effect("booking_paid", booking["id"], {"payment_intent_id": intent_id, "amount": received})]
    # Late: the hold expired, the booking was cancelled, or it was already marked paid another way.
    refund_id = _stage_refund(conn, job, booking_id=booking["id"], payment_id=changed["id"], kind="late_payment",
                              amount=received, currency=booking["currency"],
                              policy={"rule": "payment arrived after the booking stopped waiting for it",
                                      "booking_status": booking["status"]})
    return [Effect("late_payment_refund", booking["id"], {
        "booking_status": booking["status"], "amount": received,
        "refund_id": str(refund_id) if refund_id else None})]


def _payment_failed(conn: psycopg.Connection[Any], job: ClaimedJob, event_id: str,
                    obj: dict[str, Any]) -> list[Effect]:
    booking_id = _booking_id(obj)
    booking = conn.execute(QUERIES["lock_booking"], {"id": booking_id}).fetchone() if booking_id else None
    if booking is None:
        return [Effect("unknown_booking", detail={"payment_intent_id": obj["id"]})]
    code = (obj.get("last_payment_error") or {}).get("code")
    changed = conn.execute(QUERIES["record_payment_failed"], {
        **_intent_terms(obj, booking["id"]), "failure_code": code}).fetchone()
    if changed is None:
        return [Effect("no_change", booking["id"], {"reason": "payment already succeeded or canceled"})]
    emit(conn, "payment_failed", booking["id"], {
        "booking_id": str(booking["id"]), "provider_id": str(booking["provider_id"]), "status": booking["status"],
        "failure_code": code})
    return [Effect("payment_failed", booking["id"], {
        "failure_code": code, "booking_status": booking["status"],
        "note": "the booking stays pending until its hold expires; the customer may pay again"})]


def _payment_canceled(conn: psycopg.Connection[Any], job: ClaimedJob, event_id: str,
                      obj: dict[str, Any]) -> list[Effect]:
    changed = conn.execute(QUERIES["record_payment_canceled"], {"payment_intent_id": obj["id"]}).fetchone()
    booking_id = _booking_id(obj)
    if changed is None:
        return [Effect("no_change", booking_id, {"reason": "payment unknown, succeeded or already canceled"})]
    return [Effect("no_change", booking_id, {"reason": "payment intent canceled", "payment_intent_id": obj["id"]})]


def _charge_refunded(conn: psycopg.Connection[Any], job: ClaimedJob, event_id: str,
                     obj: dict[str, Any]) -> list[Effect]:
    intent_id = obj.get("payment_intent")
    payment = conn.execute(QUERIES["payment_by_intent"], {"payment_intent_id": intent_id}).fetchone()
    booking_id = payment["booking_id"] if payment else _booking_id(obj)
    booking = conn.execute(QUERIES["lock_booking"], {"id": booking_id}).fetchone() if booking_id else None
    if booking is None or intent_id is None:
        return [Effect("unknown_booking", detail={"charge_id": obj["id"], "payment_intent_id": intent_id})]
    effects = []
    if (payment is None or payment["status"] != "succeeded") and obj.get("paid") and obj.get("status") == "succeeded":
        # delivered before its payment_intent.succeeded: the charge itself proves the capture
        effects += _apply_success(conn, job, event_id, booking, intent_id=intent_id, amount=obj["amount"],
                                  received=int(obj.get("amount_captured") or obj["amount"]),
                                  currency=str(obj["currency"]).upper(), charge_id=obj["id"],
                                  source="charge.refunded (before its payment_intent.succeeded)",
                                  payment_method=_payment_method(obj))
    refunded = refund_events.charge_refunded(conn, obj)  # refunds post from their own refund.* events
    if not effects:
        reason = "refund total updated" if refunded is not None else "refund total already known"
        effects.append(Effect("no_change", booking["id"],
                              {"reason": reason, "amount_refunded": obj["amount_refunded"]}))
    return effects


def _refund_event(conn: psycopg.Connection[Any], job: ClaimedJob, event_id: str,
                  obj: dict[str, Any]) -> list[Effect]:
    outcome = refund_events.apply_refund(conn, obj)
    return [Effect(outcome.effect, outcome.booking_id, outcome.detail)]


def _payment_method(obj: dict[str, Any]) -> str | None:
    method = obj.get("payment_method")
    if isinstance(method, dict):  # expanded
        method = method.get("id")
    return method if isinstance(method, str) else None


def _is_deposit(obj: dict[str, Any]) -> bool:
    return (obj.get("metadata") or {}).get("purpose") == "deposit"


def _capturable(conn: psycopg.Connection[Any], job: ClaimedJob, event_id: str, obj: dict[str, Any]) -> list[Effect]:
    """Only a deposit is authorised for later capture; any other intent's authorisation is not ours."""
    return [Effect("ignored", _booking_id(obj), {"reason": "not a security deposit"})]


def _deposit_event(conn: psycopg.Connection[Any], job: ClaimedJob, event_type: str, obj: dict[str, Any],
                   maturity_seconds: float) -> list[Effect]:
    """What Stripe says of a security deposit's PaymentIntent, recorded once whether our own call's answer
    or this event came first: held (amount_capturable_updated), captured (succeeded: a claim, with its
    completion), cancelled (by us: released; by Stripe, ``expired`` (``automatic`` before API 2025-03-31): the hold
    lapsed), declined."""
    booking_id = _booking_id(obj)
    booking = conn.execute(QUERIES["lock_booking"], {"id": booking_id}).fetchone() if booking_id else None
    if booking is None:
        return [Effect("unknown_booking", detail={"payment_intent_id": obj["id"]})]
    changed, effect = False, "no_change"
    if event_type == "payment_intent.amount_capturable_updated" and obj.get("status") == "requires_capture":
        changed, effect = deposits.record_authorized(conn, booking["id"], obj["id"]), "deposit_authorized"
    elif event_type == "payment_intent.succeeded":
        changed = deposits.record_claimed(conn, booking["id"], payment_intent_id=obj["id"],
                                          amount=int(obj.get("amount_received") or obj["amount"]), reason=None,
                                          job_id=job.id, actor="stripe", maturity_seconds=maturity_seconds)
        effect = "deposit_claimed"
    elif event_type == "payment_intent.canceled" and obj.get("cancellation_reason") in ("expired", "automatic"):
        changed = deposits.record_failed(conn, booking["id"], code="authorization_expired",
                                         message="the card authorisation lapsed before it was settled",
                                         payment_intent_id=obj["id"], from_statuses=("authorized",))
        if changed:
            deposits.complete_stay(conn, booking["id"], job_id=job.id, actor="stripe",
                                   reason="the deposit hold lapsed", maturity_seconds=maturity_seconds)
        effect = "deposit_lapsed"
    elif event_type == "payment_intent.canceled":
        changed = deposits.record_released(conn, booking["id"], job_id=job.id, actor="stripe",
                                           maturity_seconds=maturity_seconds)
        effect = "deposit_released"
    elif event_type == "payment_intent.payment_failed":
        error = obj.get("last_payment_error") or {}
        changed = deposits.record_failed(conn, booking["id"], code=str(error.get("code") or "card_declined"),
                                         message=error.get("message"), payment_intent_id=obj["id"])
        effect = "deposit_failed"
    if not changed:
        return [Effect("no_change", booking["id"], {"reason": f"deposit already recorded ({event_type})",
                                                    "payment_intent_id": obj["id"]})]
    return [Effect(effect, booking["id"], {"payment_intent_id": obj["id"]})]


def _dispute_event(conn: psycopg.Connection[Any], job: ClaimedJob, event_id: str, obj: dict[str, Any]) -> list[Effect]:
    """A chargeback's news (``shared.disputes``): every dispute event is applied the same way, from the
    Dispute it carries."""
    booking_id, changes = disputes.apply(conn, obj)
    if booking_id is None:
        return [Effect("unknown_booking", detail={"dispute_id": obj["id"], "charge_id": obj.get("charge")})]
    return [Effect(c.effect, booking_id, c.detail) for c in changes] or [
        Effect("no_change", booking_id, {"reason": "dispute already up to date", "dispute_id": obj["id"]})]


def _account_updated(conn: psycopg.Connection[Any], job: ClaimedJob, event_id: str,
                     obj: dict[str, Any]) -> list[Effect]:
    effect, detail = connect.apply_account_updated(conn, event_id, obj)
    return [Effect(effect, detail=detail)]


_APPLIERS: dict[str, Callable[[psycopg.Connection[Any], ClaimedJob, str, dict[str, Any]], list[Effect]]] = {
    "payment_intent.succeeded": _payment_succeeded,
    "payment_intent.payment_failed": _payment_failed,
    "payment_intent.canceled": _payment_canceled,
    "payment_intent.amount_capturable_updated": _capturable,
    "charge.refunded": _charge_refunded,
    "refund.created": _refund_event, "refund.updated": _refund_event, "refund.failed": _refund_event,
    **dict.fromkeys(disputes.EVENTS, _dispute_event),


    "account.updated": _account_updated,
}
if set(_APPLIERS) != HANDLED_EVENTS or set(_REQUIRED_FIELDS) != HANDLED_EVENTS:
    raise RuntimeError("every handled event type needs an applier and its required fields")
