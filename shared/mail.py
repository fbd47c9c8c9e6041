"""Email over SMTP: one message (text and HTML parts) handed to the server named by ``SMTP_URL``.

``send_email`` never raises for an SMTP or connection failure: it returns an ``AttemptOutcome`` with the
server's reply code (when there was one) and a short error, and the caller decides whether to retry (4xx
and no answer are transient, 5xx permanent). The delivery id is the ``Message-ID`` (``<id@totem>``), so a
receiver can drop the rare duplicate of an at-least-once send. The password never appears in an outcome
or a log, and neither do addresses: a server's reply is scrubbed of anything that looks like one.

``SMTP_URL``: ``smtp://[user:password@]host[:port][?starttls=true]`` (port 25 by default), or
``smtps://…`` for TLS from the first byte (port 465 by default). User and password are percent-decoded.
STARTTLS, when asked for, is required: a server that does not offer it fails the attempt (no downgrade).
"""

from __future__ import annotations

import functools
import re
import smtplib
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import parse_qs, unquote, urlsplit

from shared.notifications import AttemptOutcome

_MESSAGE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_ADDRESS = re.compile(r"[^\s<>@\"']+@[^\s<>@\"']+")
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class Email:
    to: str
    subject: str
    text: str
    html: str
    message_id: str  # the delivery id; becomes <message_id@totem>

    def __post_init__(self) -> None:
        if not _MESSAGE_ID.match(self.message_id):
            raise ValueError("message_id must be a plain token such as a delivery id")


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool = False
    starttls: bool = False
    user: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_smtp_url(url: str) -> SmtpTarget:
    """Raise ValueError (whose message never repeats the URL, which may hold a password) when malformed."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("the scheme must be smtp or smtps")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port is not a number in 1-65535") from None
    if not parts.hostname:
        raise ValueError("no host")
    implicit_tls = parts.scheme == "smtps"
    query = parse_qs(parts.query)
    starttls = any(value.lower() in _TRUE for value in query.get("starttls", []))
    if implicit_tls and starttls:
        raise ValueError("smtps already speaks TLS; starttls applies to smtp only")
    return SmtpTarget(
        host=parts.hostname,
        port=port or (465 if implicit_tls else 25),
        implicit_tls=implicit_tls,
        starttls=starttls,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def build_message(mail_from: str, email: Email) -> EmailMessage:
    message = EmailMessage()
    message["Message-ID"] = f"<{email.message_id}@totem>"
    message["Date"] = formatdate(usegmt=True)
    message["From"] = mail_from
    message["To"] = email.to
    message["Subject"] = email.subject
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message


def send_email(smtp_url: str, mail_from: str, email: Email, *, timeout: float = 15.0) -> AttemptOutcome:
    started = time.monotonic()

    def outcome(succeeded: bool, status_code: int | None = None, error: str | None = None,
                reply: str | None = None) -> AttemptOutcome:
        return AttemptOutcome(succeeded=succeeded, duration_ms=int((time.monotonic() - started) * 1000),
                              status_code=status_code, error=error,
                              response_excerpt=_scrub(reply)[:500] if reply else None)

    try:
        target = parse_smtp_url(smtp_url)
    except ValueError as exc:
        return outcome(False, error=f"SMTP_URL invalid: {exc}")
    try:
        message = build_message(mail_from, email)
    except (ValueError, TypeError) as exc:  # a header the email package refuses (e.g. a line break)
        return outcome(False, error=f"message not built: {type(exc).__name__}")
    try:
        _deliver(target, message, timeout)
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()), (None, b""))
        return outcome(False, code, _failure("recipient refused", code, reply), _text(reply))
    except smtplib.SMTPResponseException as exc:
        what = _STAGE.get(type(exc), "refused")
        return outcome(False, exc.smtp_code, _failure(what, exc.smtp_code, exc.smtp_error), _text(exc.smtp_error))
    except smtplib.SMTPNotSupportedError as exc:
        return outcome(False, error=f"not supported by the server: {_scrub(str(exc))[:120]}")
    except smtplib.SMTPServerDisconnected:
        return outcome(False, error=f"{target.host}:{target.port} closed the connection")
    except smtplib.SMTPException as exc:
        return outcome(False, error=f"SMTP error: {type(exc).__name__}")
    except TimeoutError:
        return outcome(False, error=f"{target.host}:{target.port} timed out after {timeout:g}s")
    except ssl.SSLError as exc:
        return outcome(False, error=f"TLS failed: {exc.reason or type(exc).__name__}")
    except OSError as exc:
        return outcome(False, error=f"{target.host}:{target.port} unreachable: {exc.strerror or type(exc).__name__}")
    return outcome(True, 250)


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process, made on first use: building one loads the CA store (~50 ms of CPU),
    which per email was most of a notifications worker's time (bench, py-spy)."""
    return ssl.create_default_context()


def _deliver(target: SmtpTarget, message: EmailMessage, timeout: float) -> None:
    smtp: smtplib.SMTP
    if target.implicit_tls:
        smtp = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout, context=_tls_context())
    else:
        smtp = smtplib.SMTP(target.host, target.port, timeout=timeout)
    with smtp:
        if target.starttls:
            smtp.starttls(context=_tls_context())
        if target.user is not None:
            smtp.login(target.user, target.password or "")
        smtp.send_message(message)


_STAGE: dict[type[smtplib.SMTPResponseException], str] = {
    smtplib.SMTPConnectError: "greeting refused",
    smtplib.SMTPHeloError: "EHLO refused",
    smtplib.SMTPAuthenticationError: "login refused",
    smtplib.SMTPSenderRefused: "sender refused",
    smtplib.SMTPDataError: "message refused",
}


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _scrub(text: str) -> str:
    """A server's reply often echoes an address; no address may reach a delivery row or a log (PII)."""
    return _ADDRESS.sub("<address>", " ".join(text.split()))


def _failure(what: str, code: int | None, reply: bytes | str) -> str:
    return f"{what}: {code} {_scrub(_text(reply))[:160]}".rstrip()
