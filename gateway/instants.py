"""Instants in query strings, as the document states them: RFC 3339 date-times with an offset.

A query parameter typed ``datetime`` would also take ``?to=0.5`` (msgspec reads a number as a Unix time when
converting strings leniently), which the document does not admit and no client means. So the parameter is
a string the document constrains (``format: date-time`` and a pattern) and ``parse_instant`` reads it."""

from __future__ import annotations

from datetime import datetime

from gateway.problems import Problem
from shared.errors import Code

_DATE, _TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}", r"[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
INSTANT_PATTERN = f"^{_DATE}{_TIME}$"
INSTANT_SCHEMA = {"format": "date-time"}
# A statement bound: a local date of the provider, or an instant.
DATE_OR_INSTANT_PATTERN = f"^{_DATE}({_TIME})?$"
DATE_OR_INSTANT_SCHEMA = {"anyOf": [{"format": "date"}, {"format": "date-time"}]}


def parse_instant(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        # fromisoformat takes RFC 3339 but for a lower-case separator or zone, and more than 6 fractional digits
        head, dot, tail = text.upper().replace(" ", "T").partition(".")
        if dot:
            digits = len(tail) - len(tail.lstrip("0123456789"))
            tail = tail[:min(digits, 6)] + tail[digits:]
        moment = datetime.fromisoformat(head + dot + tail if tail[:1].isdigit() else head + tail)
    except ValueError as exc:
        raise Problem(Code.VALIDATION_FAILED, f"{name} is not an RFC 3339 date-time with an offset",
                      errors=[{"field": name, "message": "an RFC 3339 date-time with an offset"}]) from exc
    if moment.tzinfo is None:  # the pattern admits none, but a caller of this function might pass one
        raise Problem(Code.VALIDATION_FAILED, f"{name} needs an offset",
                      errors=[{"field": name, "message": "an RFC 3339 date-time with an offset"}])
    return moment
