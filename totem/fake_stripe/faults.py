"""Misbehaviour on demand: the faults a test arms with ``POST /_fake/faults``, keyed by operation name.

A fault answers its operation's next ``times`` calls with ``status`` (500 unless told), then disarms:
* ``before``: nothing happens, as when a call fails in front of Stripe;
* ``after``: the call takes effect and is stored under its idempotency key, but the answer is lost;
* ``slow``: the call waits ``delay_seconds``, then goes ahead as normal (to kill a caller mid-call).
A read (``payment_intents.retrieve``, ``customers.retrieve``, ``balance_transactions.list``, ...) has no
effect to lose: any armed fault fails it up front.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Fault:
    times: int
    when: str  # before | after | slow
    status: int = 500
    delay_seconds: float = 0.0

    @classmethod
    def from_request(cls, data: dict[str, Any]) -> Fault:
        return cls(times=int(data.get("times", 1)), when=str(data.get("when", "before")),
                   status=int(data.get("status", 500)), delay_seconds=float(data.get("delay_seconds", 0)))


@dataclass
class Faults:
    armed: dict[str, Fault] = field(default_factory=dict)

    def arm(self, operation: str, fault: Fault) -> None:
        self.armed[operation] = fault

    def take(self, operation: str, when: str | None = None) -> Fault | None:
        """The fault armed for ``operation`` at this point (``when``; None: any), counted as spent."""
        fault = self.armed.get(operation)
        if fault is None or fault.times <= 0 or (when is not None and fault.when != when):
            return None
        fault.times -= 1
        return fault

    async def stall(self, operation: str) -> None:
        """Wait out a ``slow`` fault armed for ``operation``; the call then goes ahead."""
        fault = self.take(operation, "slow")
        if fault is not None:
            await asyncio.sleep(fault.delay_seconds)
