"""The one registry of worker pools, their queues and the job types they run.

Everything that names a pool, a queue, an actor or a job type reads it: the workers' actors
(``workers.runtime.job_actor``), message routing (``shared.broker``), SQL that stages a job (it takes
``type``/``queue``/``actor`` as parameters from ``job_route``), ``totem worker <pool>``, ``totem up``,
the test fleet, the bench, and the generated Procfile, ``docker-compose.yml`` and Kubernetes manifests
(``totem generate``; a test fails when they drift). Adding a queue is: one worker module, one entry here,
``totem generate``.

Invariants (checked at import): a job type belongs to exactly one pool, a queue to exactly one pool, and
actor names are unique, so a job row's (queue, actor) always reaches the one process type that runs it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class JobType:
    name: str
    actor: str
    queue: str
    pool: str


@dataclass(frozen=True, slots=True)
class PoolSpec:
    name: str
    module: str
    queue: str
    jobs: dict[str, str]  # job type -> actor name
    description: str
    processes: int = 1
    threads: int = 8
    cpu_request: str = "250m"
    max_replicas: int = 10
    # CPU priority (Unix niceness, 0-19) on a host it shares with other pools: a background pool (mail and
    # webhooks, which may lag by seconds) yields the CPU to the booking path under load and catches up after
    nice: int = 0


# Job types, named once; code refers to these constants, never to the strings.
BOOKING_CREATE = "booking.create"
BOOKING_CANCEL = "booking.cancel"
BOOKING_COMPLETE = "booking.complete"
BOOKING_MARK_PAID = "booking.mark_paid"
BOOKING_APPROVE = "booking.approve"
BOOKING_DECLINE = "booking.decline"
BOOKING_CHECK_IN = "booking.check_in"
BOOKING_CHECK_OUT = "booking.check_out"
DEPOSIT_AUTHORIZE = "deposit.authorize"
DEPOSIT_CLAIM = "deposit.claim"
DEPOSIT_RELEASE = "deposit.release"
STRIPE_APPLY_EVENT = "stripe.apply_event"
REFUND_ISSUE = "refund.issue"
PAYMENT_CANCEL_INTENT = "payment.cancel_intent"
PAYOUT_SEND = "payout.send"
LEDGER_RECONCILE = "ledger.reconcile"
CONNECT_ONBOARD = "connect.onboard"
NOTIFICATION_DELIVER = "notification.deliver"

POOLS: tuple[PoolSpec, ...] = (
    PoolSpec(
        name="bookings", module="workers.bookings", queue="bookings",
        jobs={BOOKING_CREATE: "create_booking", BOOKING_CANCEL: "cancel_booking",
              BOOKING_COMPLETE: "complete_booking", BOOKING_MARK_PAID: "mark_booking_paid",
              BOOKING_APPROVE: "approve_booking", BOOKING_DECLINE: "decline_booking",
              BOOKING_CHECK_IN: "check_in_booking", BOOKING_CHECK_OUT: "check_out_booking"},
        description="holds, PaymentIntents and the booking lifecycle (requests, check-in, check-out)",
        threads=8, cpu_request="500m", max_replicas=20),
    PoolSpec(
        name="payments", module="workers.payments", queue="payment_webhooks",
        jobs={STRIPE_APPLY_EVENT: "apply_stripe_event", REFUND_ISSUE: "issue_refund",
              PAYMENT_CANCEL_INTENT: "cancel_payment_intent", DEPOSIT_AUTHORIZE: "authorize_deposit",
              DEPOSIT_CLAIM: "claim_deposit", DEPOSIT_RELEASE: "release_deposit"},
        description="applies Stripe's webhooks, issues refunds, cancels abandoned PaymentIntents, holds, "
                    "claims and releases security deposits",
        threads=8, cpu_request="250m", max_replicas=10),
    PoolSpec(
        name="payouts", module="workers.payouts", queue="payouts",
        jobs={PAYOUT_SEND: "send_payout", LEDGER_RECONCILE: "reconcile_ledger",
              CONNECT_ONBOARD: "onboard_stripe_account"},
        description="sends payouts (Stripe Transfers), reconciles the ledger with Stripe, and creates "
                    "providers' connected accounts and their onboarding links",
        threads=4, cpu_request="100m", max_replicas=5),
    PoolSpec(
        name="notifications", module="workers.notifications", queue="notifications",
        jobs={NOTIFICATION_DELIVER: "deliver_notification"},
        description="sends emails (SMTP) and signed webhooks to providers' endpoints, with retries",
        threads=8, cpu_request="100m", max_replicas=10, nice=10),
)

POOL_BY_NAME: dict[str, PoolSpec] = {pool.name: pool for pool in POOLS}
JOB_TYPES: dict[str, JobType] = {
    name: JobType(name=name, actor=actor, queue=pool.queue, pool=pool.name)
    for pool in POOLS for name, actor in pool.jobs.items()
}
QUEUES: tuple[str, ...] = tuple(pool.queue for pool in POOLS)


def job_route(job_type: str) -> dict[str, str]:
    """The ``type``, ``queue`` and ``actor`` parameters of a statement that stages a job of this type."""
    job = JOB_TYPES[job_type]
    return {"type": job.name, "queue": job.queue, "actor": job.actor}


def _check() -> None:
    pools_of_queue = [pool.queue for pool in POOLS]
    actors = [actor for pool in POOLS for actor in pool.jobs.values()]
    job_names = [name for pool in POOLS for name in pool.jobs]
    for what, names in (("queue", pools_of_queue), ("actor", actors), ("job type", job_names),
                        ("pool", [pool.name for pool in POOLS])):
        twice = {name for name in names if names.count(name) > 1}
        if twice:
            raise ValueError(f"registry: {what} declared more than once: {sorted(twice)}")


_check()
