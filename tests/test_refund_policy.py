"""The cancellation policy as a pure function: which window applies, and integer rounding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.payments import quote_refund

POLICY = [{"min_hours_before_start": 0, "refund_percent": 50},
          {"min_hours_before_start": 24, "refund_percent": 100},
          {"min_hours_before_start": 6, "refund_percent": 75}]
START = datetime(2031, 6, 2, 10, tzinfo=UTC)


@pytest.mark.parametrize(("hours_before", "percent"), [
    (48, 100), (24, 100), (23.99, 75), (6, 75), (5.5, 50), (0, 50), (-0.01, 0), (-5, 0)])
def test_the_window_with_the_largest_threshold_still_met_applies(hours_before: float, percent: int) -> None:
    quote = quote_refund(POLICY, START, START - timedelta(hours=hours_before), paid=10_000)
    assert quote.refund_percent == percent and quote.amount == 100 * percent
    assert (quote.window or {}).get("refund_percent", 0) == percent


def test_amounts_round_down_to_the_minor_unit() -> None:
    now = START - timedelta(hours=1)
    assert quote_refund(POLICY, START, now, paid=2501).amount == 1250
    assert quote_refund([{"min_hours_before_start": 0, "refund_percent": 33}], START, now, paid=100).amount == 33
    assert quote_refund([{"min_hours_before_start": 0, "refund_percent": 100}], START, now, paid=2501).amount == 2501


def test_no_policy_refunds_nothing() -> None:
    quote = quote_refund([], START, START - timedelta(days=30), paid=5000)
    assert (quote.amount, quote.refund_percent, quote.window) == (0, 0, None)
