"""Notification templates: jinja2 in its sandbox, rendered into a subject, a text body and an HTML body.

Templates live in the database (``notification_templates``: the platform's defaults and a provider's own
overrides), so their text is not trusted: they render in jinja2's ``SandboxedEnvironment`` (no access to
dunder attributes, no unsafe calls), with ``StrictUndefined`` (a misspelt variable fails rather than
rendering empty), with ``*``/``**`` on big operands refused, and without loops, assignments, calls, macros,
includes or imports (refused when the template is compiled), with a short list of filters that cannot grow
their input and no globals: a template is variables, allowed filters and conditionals, so what rendering
costs in time and memory is bounded by the template's length (no CPU or memory bomb). Only the HTML body is
autoescaped; the subject is one line (every line break and run of whitespace becomes one space, so a value
cannot inject a header). Any failure to compile or render raises ``NotificationTemplateInvalid`` naming the
part; that fails the one delivery, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from shared.errors import NotificationTemplateInvalid

# Stripe's zero-decimal and three-decimal currencies (https://docs.stripe.com/currencies); all others: two.
_ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND",
                           "VUV", "XAF", "XOF", "XPF"})
_THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
_MAX_REPEAT = 10_000  # the longest string or list a template may build with `*`
_MAX_EXPONENT = 100

_PARTS = (("subject", False), ("text_body", False), ("html_body", True))


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > _MAX_EXPONENT:
            raise SecurityError(f"exponent above {_MAX_EXPONENT}")
        if operator == "*" and _repeats_too_much(left, right):
            raise SecurityError(f"repetition above {_MAX_REPEAT}")
        return super().call_binop(context, operator, left, right)


def _repeats_too_much(left: Any, right: Any) -> bool:
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(count, int) and len(sequence) * count > _MAX_REPEAT:
            return True
    return False


# Filters that return at most about what they are given (no center/indent/replace/format/wordwrap).
_FILTERS = ("abs", "capitalize", "count", "d", "default", "e", "escape", "first", "int", "last", "length", "lower",
            "round", "string", "striptags", "title", "trim", "truncate", "upper", "urlencode")


def _environment(*, html: bool) -> _Sandbox:
    environment = _Sandbox(undefined=StrictUndefined, autoescape=html, keep_trailing_newline=True)
    environment.filters = {name: environment.filters[name] for name in _FILTERS}
    environment.globals.clear()
    return environment


_TEXT = _environment(html=False)
_HTML = _environment(html=True)


# What a message template never needs, and what could make rendering cost more than its length.
_FORBIDDEN = {nodes.For: "loops", nodes.Assign: "set", nodes.AssignBlock: "set", nodes.Call: "calls",
              nodes.Macro: "macros", nodes.CallBlock: "call blocks", nodes.Include: "includes",
              nodes.Import: "imports", nodes.FromImport: "imports", nodes.Extends: "extends"}


@lru_cache(maxsize=512)
def _compiled(source: str, html: bool) -> Template:
    environment = _HTML if html else _TEXT
    tree = environment.parse(source)
    for node_type, what in _FORBIDDEN.items():
        if tree.find(node_type) is not None:
            raise SecurityError(f"templates may not use {what}")
    return environment.from_string(tree)


def render(template: Mapping[str, Any], context: Mapping[str, Any]) -> Rendered:
    """Render a ``notification_templates`` row (``subject``, ``text_body``, ``html_body``) with ``context``."""
    subject, text, html = (_render_part(template, part, html, context) for part, html in _PARTS)
    return Rendered(subject=" ".join(subject.split()), text=text, html=html)


def _render_part(template: Mapping[str, Any], part: str, html: bool, context: Mapping[str, Any]) -> str:
    source = template.get(part)
    if not isinstance(source, str):
        raise NotificationTemplateInvalid(f"{part}: missing")
    try:
        return _compiled(source, html).render(context)
    except TemplateSyntaxError as exc:
        raise NotificationTemplateInvalid(f"{part}: syntax error on line {exc.lineno}: {exc.message}") from None
    except TemplateError as exc:  # UndefinedError, SecurityError, ...
        raise NotificationTemplateInvalid(f"{part}: {type(exc).__name__}: {exc.message or 'refused'}") from None
    except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError) as exc:
        # the template's own expression failed; the message may quote a value (PII), the type says enough
        raise NotificationTemplateInvalid(f"{part}: {type(exc).__name__} in an expression") from None


def amount_display(amount: int, currency: str) -> str:
    """Minor units as text, without floats: (3500, "eur") → "35.00 EUR", (3500, "JPY") → "3500 JPY"."""
    code = currency.upper()
    decimals = 0 if code in _ZERO_DECIMAL else 3 if code in _THREE_DECIMAL else 2
    sign = "-" if amount < 0 else ""
    if decimals == 0:
        return f"{sign}{abs(amount)} {code}"
    whole, minor = divmod(abs(amount), 10**decimals)
    return f"{sign}{whole}.{minor:0{decimals}d} {code}"
