"""``totem smtp-sink``: a real local SMTP server (aiosmtpd) that keeps every message as a file (dev, tests).

It accepts any sender, any recipient and any login, and writes each message, byte for byte as received,
to ``<directory>/<UTC timestamp>-<sanitised Message-ID>.eml``. A message is written under a hidden temporary
name and renamed into place, so a reader listing ``*.eml`` never sees half a file; two sends of the same
Message-ID (an at-least-once retry) are two files. The server runs until SIGTERM or SIGINT, then closes its
socket and returns. Health: it answers ``EHLO``; the launcher probes the TCP port.

Fault injection for tests: while a file ``<directory>/.refuse`` exists, DATA is answered with
``451 4.3.0 try again later`` (a transient refusal) and nothing is written; remove the file and the sink
accepts mail again, without a restart.

aiosmtpd logs every envelope address at INFO; its logger is kept at WARNING so no address reaches a log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import uuid
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from shared.logs import configure_logging

log = logging.getLogger("totem.smtp_sink")

REFUSE_FLAG = ".refuse"
REFUSAL = "451 4.3.0 try again later"
_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]+")


def message_filename(content: bytes, now: datetime) -> str:
    """``<UTC timestamp>-<Message-ID>.eml``; the id reduced to safe characters (no path can be smuggled in)."""
    message_id = BytesHeaderParser().parsebytes(content).get("Message-ID") or f"no-id-{uuid.uuid4().hex}"
    safe_id = _UNSAFE.sub("_", str(message_id)).strip("._")[:120] or "no-id"
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}-{safe_id}.eml"


def _write_atomically(directory: Path, name: str, content: bytes) -> Path:
    temporary = directory / f".{name}.{uuid.uuid4().hex}.tmp"
    with temporary.open("wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
    final = directory / name
    temporary.replace(final)
    return final


class FolderHandler:
    """aiosmtpd's handler hook: one file per accepted message."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if (self.directory / REFUSE_FLAG).exists():
            return REFUSAL
        content = envelope.original_content or b""
        name = message_filename(content, datetime.now(UTC))
        await asyncio.to_thread(_write_atomically, self.directory, name, content)
        log.info("message kept as %s (%d bytes)", name, len(content))
        return "250 OK kept"


def _accept_any_login(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    return AuthResult(success=True)  # a sink: a configured SMTP_URL with a user must work against it too


async def _serve(host: str, port: int, directory: Path) -> None:
    loop = asyncio.get_running_loop()
    handler = FolderHandler(directory)

    def connection() -> SMTP:
        return SMTP(handler, hostname="totem-smtp-sink", enable_SMTPUTF8=True, loop=loop,
                    authenticator=_accept_any_login, auth_require_tls=False)

    server = await loop.create_server(connection, host, port)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("SMTP sink listening on %s:%d, messages in %s", host, port, directory)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        log.info("SMTP sink stopped")


def serve(host: str, port: int, directory: Path) -> None:
    """Listen on ``host:port`` and keep every message in ``directory`` until SIGTERM/SIGINT."""
    directory.mkdir(parents=True, exist_ok=True)
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"), "smtp-sink")
    mail_log = logging.getLogger("mail.log")
    mail_log.setLevel(logging.WARNING)
    # aiosmtpd 1.4 warns about its own deprecated attribute on every successful login
    mail_log.addFilter(lambda record: "login_data is deprecated" not in record.getMessage())
    asyncio.run(_serve(host, port, directory))
