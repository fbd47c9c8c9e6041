"""What the chaos run breaks, on a schedule drawn from its seed: SIGKILL of a worker pool, the relay, the
scheduler that leads and the gateway; a restart of Redis and of Postgres (the run's private servers); and
on the fake Stripe, calls failed before or after they take effect, and webhooks duplicated, delayed and
held back to be released reversed or shuffled. Every kind is scheduled at least once in any run, so a short
run still tries each; a longer one draws more at random.

Process faults go through the one launcher (``Fleet.restart``: SIGKILL to the whole process group, then the
same command again); the servers are stopped and started on the same port, as an operator's restart would."""

from __future__ import annotations

import logging
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from totem.embedded import PrivatePostgres, PrivateRedis
from totem.fleet import Fleet, wait_ready

log = logging.getLogger("totem.chaos")

# Stripe operations our workers call, each failed before or after it takes effect.
STRIPE_OPERATIONS = ("payment_intents.create", "payment_intents.cancel", "refunds.create", "transfers.create",
                     "payment_intents.confirm")
PROCESS_FAULTS = ("worker_kill9", "relay_kill9", "leader_kill9", "gateway_kill9", "redis_restart", "postgres_restart")
WEBHOOK_FAULTS = ("webhook_duplicate", "webhook_delay", "webhook_reorder")
KILLABLE_POOLS = ("bookings", "payments", "payouts", "notifications")


@dataclass
class Injector:
    fleet: Fleet
    postgres: PrivatePostgres
    redis: PrivateRedis
    schedulers: tuple[str, ...]
    seed: int
    say: Callable[[str], None]
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        # two streams, so how the Stripe faults interleave with the others in time cannot change either sequence
        self.rng = random.Random(self.seed)  # noqa: S311 - a repeatable fault schedule, not a secret
        self.stripe_rng = random.Random(self.seed + 1)  # noqa: S311
        self.stripe = httpx.Client(base_url=self.fleet.stripe_url, timeout=10)

    def schedule(self, duration: float) -> list[tuple[float, str]]:
        """(seconds from the start, fault) pairs: every kind once, evenly spread with jitter, then one more at
        random for every 10 s beyond a minute; the Stripe faults are armed apart from these (``arm_stripe``)."""
        kinds = list(PROCESS_FAULTS + WEBHOOK_FAULTS)
        kinds += [self.rng.choice(PROCESS_FAULTS + WEBHOOK_FAULTS) for _ in range(max(0, int(duration - 60) // 10))]
        self.rng.shuffle(kinds)
        step = duration * 0.85 / (len(kinds) + 1)
        return [(step * (i + 1) + self.rng.uniform(-0.3, 0.3) * step, kind) for i, kind in enumerate(kinds)]

    def inject(self, kind: str) -> list[str]:
        """Break one thing; what went wrong doing so (a server that would not start again is a finding, and
        the run goes on to settle and check what it can)."""
        try:
            getattr(self, f"_{kind}")()
        except Exception as exc:  # noqa: BLE001 - reported in the run's problems, never swallowed
            self.say(f"chaos: fault {kind} failed: {exc!r}")
            return [f"fault {kind} failed: {exc!r}"]
        return []

    def arm_stripe(self) -> None:
        """Fail the next one or two calls of one operation. The first two armed are on the call every booking
        makes, one before and one after it takes effect, so even a short run sees both kinds fire."""
        first = (("payment_intents.create", "before"), ("payment_intents.create", "after"))
        armed = self.counts["stripe_armed"]
        operation, when = first[armed] if armed < len(first) else (
            self.stripe_rng.choice(STRIPE_OPERATIONS), self.stripe_rng.choice(("before", "after")))
        self._fake("/_fake/faults", {"operation": operation, "times": self.stripe_rng.randint(1, 2), "when": when})
        self.counts["stripe_armed"] += 1

    # --- processes ---------------------------------------------------------------------------------
    def _worker_kill9(self) -> None:
        pool = self.rng.choice(KILLABLE_POOLS)
        self.fleet.restart(pool)
        self.counts["worker_kill9"] += 1
        self.say(f"chaos: fault: SIGKILL worker pool {pool} (restarted)")

    def _relay_kill9(self) -> None:
        self.fleet.restart("relay")
        self.counts["relay_kill9"] += 1
        self.say("chaos: fault: SIGKILL the outbox relay (restarted)")

    def _gateway_kill9(self) -> None:
        self.fleet.restart("web")
        self.counts["gateway_kill9"] += 1
        self.say("chaos: fault: SIGKILL the gateway (restarted)")
        wait_ready(self.fleet.base_url + "/healthz", 60)

    def _leader_kill9(self) -> None:
        """SIGKILL whichever scheduler holds the lease now (read from its own metrics); a follower takes over
        once the lease runs out."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            leader = next((name for name in self.schedulers if self._leads(name)), None)
            if leader is not None:
                self.fleet.restart(leader)
                self.counts["leader_kill9"] += 1
                self.say(f"chaos: fault: SIGKILL the scheduler leader {leader} (restarted as a follower)")
                return
            time.sleep(0.5)
        self.say("chaos: fault: no scheduler led for 20 s; leader kill skipped")

    def _leads(self, name: str) -> bool:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.fleet.metrics_ports[name]}/", timeout=2).text
        except httpx.HTTPError:
            return False
        return any(line.startswith("totem_scheduler_leader ") and float(line.split()[-1]) == 1
                   for line in text.splitlines())

    # --- servers -----------------------------------------------------------------------------------
    def _redis_restart(self) -> None:
        port = self.redis.port
        self.redis.stop(signal.SIGKILL)  # its queued messages are gone with it (no persistence)
        time.sleep(self.rng.uniform(0.5, 2.0))
        self.redis.start(port=port)
        self.counts["redis_restart"] += 1
        self.say(f"chaos: fault: Redis killed and restarted empty on :{port}")

    def _postgres_restart(self) -> None:
        port = self.postgres.port
        self.postgres.stop(mode=self.rng.choice(("fast", "immediate")))
        time.sleep(self.rng.uniform(0.5, 2.0))
        self.postgres.start(port=port)
        self.counts["postgres_restart"] += 1
        self.say(f"chaos: fault: Postgres restarted on :{port}")

    # --- the fake Stripe's webhooks ------------------------------------------------------------------
    def _webhook_duplicate(self) -> None:
        self._webhooks_for_a_while({"copies": self.rng.randint(2, 3)}, {"copies": 1}, "webhook_duplicate",
                                   "sent several times each")

    def _webhook_delay(self) -> None:
        self._webhooks_for_a_while({"delay_seconds": self.rng.uniform(2, 6)}, {"delay_seconds": 0},
                                   "webhook_delay", "delivered late")

    def _webhooks_for_a_while(self, setting: dict[str, object], normal: dict[str, object], fault: str,
                              what: str) -> None:
        self._fake("/_fake/webhooks", setting)
        time.sleep(self.rng.uniform(2, 4))
        self._fake("/_fake/webhooks", normal)
        self.counts[fault] += 1
        self.say(f"chaos: fault: Stripe webhooks {what} for a while")

    def _webhook_reorder(self) -> None:
        self._fake("/_fake/webhooks", {"hold": True})
        time.sleep(self.rng.uniform(2, 5))
        self._fake("/_fake/webhooks", {"hold": False})
        order = self.rng.choice(("reversed", "shuffled"))
        self._fake("/_fake/webhooks/release", {"order": order, "copies": self.rng.randint(1, 2),
                                               "seed": self.rng.randint(0, 1_000_000)})
        self.counts["webhook_reorder"] += 1
        self.say(f"chaos: fault: Stripe webhooks held back, then released {order}")

    def calm(self) -> None:
        """Back to a well-behaved Stripe: nothing armed, nothing held, one copy each, on time."""
        self.stripe.delete("/_fake/faults").raise_for_status()
        self._fake("/_fake/webhooks", {"hold": False, "copies": 1, "delay_seconds": 0})
        self._fake("/_fake/webhooks/release", {"order": "in_order"})

    def _fake(self, path: str, body: dict[str, object]) -> None:
        self.stripe.post(path, json=body).raise_for_status()

    def close(self) -> None:
        self.stripe.close()
