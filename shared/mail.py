"""Email over SMTP: one message (text and HTML parts) handed to the server named by ``SMTP_URL``.

``send_email`` never raises for an SMTP or connection failure: it returns an ``AttemptOutcome`` with the
server's reply code (when there was one) and a short error, and the caller decides whether to retry (4xx
and no answer are transient, 5xx permanent). The delivery id is the ``Message-ID`` (``<id@totem>``), so a
receiver can drop the rare duplicate of an at-least-once send. The password never appears in an outcome
or a log, and neither do addresses: a server's reply is scrubbed of anything that looks like one.

``SMTP_URL``: ``smtp://[user:password@]host[:port][?starttls=true]`` (port 25 by default), or
``smtps://…`` for TLS from the first byte (port 465 by default). User and password are percent-decoded.
STARTTLS, when asked for, is required: a server that does not offer it fails the attempt (no downgrade).

Each worker thread keeps its SMTP connection open between messages (as a mail client does; a fresh one per
message cost the worker a quarter of its CPU per email, and the server a handshake): it is reused for at most
``REUSE_MESSAGES`` messages and ``REUSE_IDLE_SECONDS`` of idleness, and dropped after any failure. A reused
connection that turns out closed by the server is replaced once and the message sent on the new one; if the
old one had in fact taken the message, that is the rare duplicate the Message-ID lets a receiver drop.
"""

from __future__ import annotations

import contextlib
import functools
import re
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.header import Header
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTPUTF8, compat32
from email.utils import formatdate, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

from shared.notifications import AttemptOutcome

_MESSAGE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_ADDRESS = re.compile(r"[^\s<>@\"']+@[^\s<>@\"']+")
_TRUE = {"1", "true", "yes", "on"}
_WIRE = compat32.clone(linesep="\r\n")
REUSE_MESSAGES = 100
REUSE_IDLE_SECONDS = 20.0


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


def build_message(mail_from: str, email: Email) -> bytes:
    """The message as sent: ``multipart/alternative`` with a UTF-8 text part and an HTML part, CRLF line ends.

    When both addresses are ASCII (nearly always) it is built with the email package's compat32 classes, a
    quarter of the CPU of ``EmailMessage`` with the modern policy (bench); as those do not check header values,
    a line break in one raises ValueError here (no header injection), and a non-ASCII subject is RFC 2047
    encoded. An address beyond ASCII takes the modern path with the SMTPUTF8 policy (RFC 6531)."""
    headers = (("Message-ID", f"<{email.message_id}@totem>"), ("Date", formatdate(usegmt=True)),
               ("From", mail_from), ("To", email.to), ("Subject", email.subject))
    for name, value in headers:
        if "\r" in value or "\n" in value:
            raise ValueError(f"a line break in the {name} header")
    if not (mail_from + email.to).isascii():
        modern = EmailMessage(policy=SMTPUTF8)
        for name, value in headers:
            modern[name] = value
        modern.set_content(email.text)
        modern.add_alternative(email.html, subtype="html")
        return modern.as_bytes()
    message = MIMEMultipart("alternative")
    for name, value in headers:
        message[name] = value if value.isascii() else Header(value, "utf-8").encode()
    message.attach(MIMEText(email.text, "plain", "utf-8"))
    message.attach(MIMEText(email.html, "html", "utf-8"))
    return message.as_bytes(policy=_WIRE)


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
        _deliver(target, _envelope_sender(mail_from), email.to, message, timeout)
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


class _Connections(threading.local):
    """This thread's open SMTP connection, the target it speaks to, how many messages it carried and when it
    was last used."""

    smtp: smtplib.SMTP | None = None
    target: SmtpTarget | None = None
    sent: int = 0
    used_at: float = 0.0

    def drop(self) -> None:
        smtp, self.smtp, self.target, self.sent = self.smtp, None, None, 0
        if smtp is not None:
            with contextlib.suppress(OSError):
                smtp.close()


_connections = _Connections()


def _connect(target: SmtpTarget, timeout: float) -> smtplib.SMTP:
    smtp: smtplib.SMTP
    if target.implicit_tls:
        smtp = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout, context=_tls_context())
    else:
        smtp = smtplib.SMTP(target.host, target.port, timeout=timeout)
    try:
        if target.starttls:
            smtp.starttls(context=_tls_context())
        if target.user is not None:
            smtp.login(target.user, target.password or "")
    except BaseException:
        smtp.close()
        raise
    return smtp


def _deliver(target: SmtpTarget, sender: str, recipient: str, message: bytes, timeout: float) -> None:
    held = _connections
    now = time.monotonic()
    if held.smtp is not None and (held.target != target or held.sent >= REUSE_MESSAGES
                                  or now - held.used_at > REUSE_IDLE_SECONDS):
        held.drop()
    reused = held.smtp is not None
    # an address beyond ASCII needs the server's SMTPUTF8 (RFC 6531); one that lacks it refuses the message
    options = [] if (sender + recipient).isascii() else ["SMTPUTF8", "BODY=8BITMIME"]
    if held.smtp is None:
        held.smtp, held.target = _connect(target, timeout), target
    try:
        try:
            held.smtp.sendmail(sender, [recipient], message, options)
        except (smtplib.SMTPServerDisconnected, ConnectionError):
            if not reused:
                raise
            held.drop()  # the server closed the idle connection: one fresh one
            held.smtp, held.target = _connect(target, timeout), target
            held.smtp.sendmail(sender, [recipient], message, options)
    except BaseException:
        held.drop()
        raise
    held.sent += 1
    held.used_at = time.monotonic()


_STAGE: dict[type[smtplib.SMTPResponseException], str] = {
    smtplib.SMTPConnectError: "greeting refused",
    smtplib.SMTPHeloError: "EHLO refused",
    smtplib.SMTPAuthenticationError: "login refused",
    smtplib.SMTPSenderRefused: "sender refused",
    smtplib.SMTPDataError: "message refused",
}


def _envelope_sender(mail_from: str) -> str:
    """The bare address of ``MAIL_FROM`` (which may carry a display name) for the SMTP envelope."""
    return parseaddr(mail_from)[1] or mail_from


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _scrub(text: str) -> str:
    """A server's reply often echoes an address; no address may reach a delivery row or a log (PII)."""
    return _ADDRESS.sub("<address>", " ".join(text.split()))


def _failure(what: str, code: int | None, reply: bytes | str) -> str:
    return f"{what}: {code} {_scrub(_text(reply))[:160]}".rstrip()
