"""Email: the real SMTP sink (`totem smtp-sink`, a subprocess), the real `send_email`, and the templates
stored in the database rendered in jinja2's sandbox."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from shared import mail
from shared.errors import Code, NotificationTemplateInvalid
from shared.mail import Email, send_email
from shared.templates import amount_display, render
from tests.support import ROOT, wait_for
from totem.embedded import free_port

MAIL_FROM = "Totem <no-reply@totem.localhost>"


@dataclass(frozen=True)
class Sink:
    url: str
    directory: Path
    proc: subprocess.Popen[bytes]

    def messages(self, delivery_id: str) -> list[Path]:
        return sorted(self.directory.glob(f"*-{delivery_id}@totem.eml"))


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _start_sink(tmp: Path, port: int | None = None) -> Sink:
    port = port or free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    log = (tmp / "smtp-sink.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "totem.cli", "smtp-sink", "--port", str(port),
                             "--dir", str(tmp / "mail")], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_for(lambda: proc.poll() is not None or _listening(port), 20, "the SMTP sink to listen")
        assert proc.poll() is None, (tmp / "smtp-sink.log").read_text()
    except BaseException:
        _stop(proc)
        raise
    return Sink(f"smtp://127.0.0.1:{port}", tmp / "mail", proc)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sink]:
    sink = _start_sink(tmp_path_factory.mktemp("smtp-sink"))
    try:
        yield sink
    finally:
        if sink.proc.poll() is None:
            _stop(sink.proc)


def _email(**overrides: str) -> Email:
    fields = {"to": "grace@example.com", "subject": "Booking confirmed: Haircut with Salon Ada",
              "text": "Hello Grace,\n\nyour booking is confirmed.\n", "html": "<p>Hello Grace,</p>",
              "message_id": str(uuid.uuid4()), **overrides}
    return Email(**fields)


def _read(path: Path) -> EmailMessage:
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


# --- sending through the real sink ---------------------------------------------------------------------

def test_a_sent_email_arrives_as_one_eml_with_text_and_html_parts(sink: Sink) -> None:
    email = _email(text="Hello Grace, ü\n", html="<p>Hello <b>Grace</b>, ü</p>")

    outcome = send_email(sink.url, MAIL_FROM, email)

    assert outcome.succeeded, outcome
    assert outcome.error is None and outcome.duration_ms >= 0
    [path] = sink.messages(email.message_id)
    message = _read(path)
    assert message["Message-ID"] == f"<{email.message_id}@totem>"
    assert message["To"] == "grace@example.com"
    assert message["From"] == MAIL_FROM
    assert message["Subject"] == "Booking confirmed: Haircut with Salon Ada"
    assert message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().splitlines() == ["Hello Grace, ü"]  # the .eml keeps SMTP's CRLF line ends
    assert html.get_content().splitlines() == ["<p>Hello <b>Grace</b>, ü</p>"]


def test_the_sink_never_leaves_a_half_written_or_temporary_file(sink: Sink) -> None:
    for _ in range(5):
        assert send_email(sink.url, MAIL_FROM, _email()).succeeded
    leftovers = [p.name for p in sink.directory.iterdir() if p.suffix != ".eml" and p.name != ".refuse"]
    assert leftovers == []


def test_a_resent_delivery_carries_the_same_message_id_so_a_receiver_can_drop_it(sink: Sink) -> None:
    email = _email()
    assert send_email(sink.url, MAIL_FROM, email).succeeded
    assert send_email(sink.url, MAIL_FROM, email).succeeded

    copies = sink.messages(email.message_id)
    assert len(copies) == 2
    assert {_read(p)["Message-ID"] for p in copies} == {f"<{email.message_id}@totem>"}


def test_login_works_and_the_password_never_appears_in_an_outcome(sink: Sink) -> None:
    port = sink.url.rsplit(":", 1)[1]
    assert send_email(f"smtp://mailer:s3cret-pw@127.0.0.1:{port}", MAIL_FROM, _email()).succeeded

    unreachable = send_email(f"smtp://mailer:s3cret-pw@127.0.0.1:{free_port()}", MAIL_FROM, _email())
    malformed = send_email("http://mailer:s3cret-pw@127.0.0.1:1", MAIL_FROM, _email())
    for outcome in (unreachable, malformed):
        assert not outcome.succeeded
        assert "s3cret" not in repr(outcome)


def test_a_refusing_server_is_a_451_failure_and_the_sink_recovers_when_the_flag_goes(sink: Sink) -> None:
    flag = sink.directory / ".refuse"
    refused = _email()
    flag.touch()
    try:
        outcome = send_email(sink.url, MAIL_FROM, refused)
    finally:
        flag.unlink()

    assert not outcome.succeeded
    assert outcome.status_code == 451
    assert outcome.error and "451" in outcome.error
    assert "grace@example.com" not in repr(outcome)
    assert sink.messages(refused.message_id) == []

    assert send_email(sink.url, MAIL_FROM, refused).succeeded
    assert len(sink.messages(refused.message_id)) == 1


def test_nothing_listening_is_a_failure_not_an_exception() -> None:
    outcome = send_email(f"smtp://127.0.0.1:{free_port()}", MAIL_FROM, _email(), timeout=5)

    assert not outcome.succeeded
    assert outcome.status_code is None
    assert outcome.error and "unreachable" in outcome.error


def test_starttls_asked_of_a_server_without_it_fails_rather_than_sending_in_clear(sink: Sink) -> None:
    email = _email()
    outcome = send_email(f"{sink.url}?starttls=true", MAIL_FROM, email)

    assert not outcome.succeeded
    assert sink.messages(email.message_id) == []


def test_a_thread_reuses_its_connection_and_replaces_one_the_server_closed(tmp_path: Path) -> None:
    own = _start_sink(tmp_path / "first")
    port = int(own.url.rsplit(":", 1)[1])
    try:
        first, second = _email(), _email()
        assert send_email(own.url, MAIL_FROM, first).succeeded
        connection = mail._connections.smtp
        assert send_email(own.url, MAIL_FROM, second).succeeded
        assert connection is not None and mail._connections.smtp is connection  # one connection, two messages
        assert [len(own.messages(e.message_id)) for e in (first, second)] == [1, 1]
    finally:
        _stop(own.proc)

    again = _start_sink(tmp_path / "second", port)  # the held connection now points at a closed server
    try:
        third = _email()
        outcome = send_email(again.url, MAIL_FROM, third)
        assert outcome.succeeded, outcome
        assert len(again.messages(third.message_id)) == 1
        assert mail._connections.smtp is not connection
    finally:
        _stop(again.proc)


def test_a_failed_send_drops_the_connection_and_another_server_gets_its_own(sink: Sink, tmp_path: Path) -> None:
    assert send_email(sink.url, MAIL_FROM, _email()).succeeded
    other = _start_sink(tmp_path)
    try:
        email = _email()
        assert send_email(other.url, MAIL_FROM, email).succeeded
        assert other.messages(email.message_id) and not sink.messages(email.message_id)
    finally:
        _stop(other.proc)
    (sink.directory / ".refuse").touch()
    try:
        assert not send_email(sink.url, MAIL_FROM, _email()).succeeded
        assert mail._connections.smtp is None
    finally:
        (sink.directory / ".refuse").unlink()


def test_a_subject_and_address_beyond_ascii_arrive_intact(sink: Sink) -> None:
    email = _email(to="zoë@example.com", subject="Réservation confirmée — Coupe")
    outcome = send_email(sink.url, "Salon Zoë <no-reply@totem.localhost>", email)

    assert outcome.succeeded, outcome
    [path] = sink.messages(email.message_id)
    message = _read(path)
    assert message["Subject"] == "Réservation confirmée — Coupe"
    assert message["To"] == "zoë@example.com"


def test_a_line_break_in_an_address_fails_the_message_and_sends_nothing(sink: Sink) -> None:
    email = _email(to="grace@example.com\r\nBcc: victim@example.com")
    outcome = send_email(sink.url, MAIL_FROM, email)

    assert not outcome.succeeded and outcome.error == "message not built: ValueError"
    assert sink.messages(email.message_id) == []


def test_the_sink_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    own = _start_sink(tmp_path)
    port = int(own.url.rsplit(":", 1)[1])

    assert _stop(own.proc) == 0
    assert not _listening(port)


# --- templates -----------------------------------------------------------------------------------------

def _context(**customer: Any) -> dict[str, Any]:
    booking_id = str(uuid.uuid4())
    return {
        "booking": {"id": booking_id, "status": "paid", "start_at": "2031-06-02 10:00 (Europe/Berlin)",
                    "end_at": "2031-06-02 10:30 (Europe/Berlin)", "amount": 3500, "currency": "EUR",
                    "amount_display": amount_display(3500, "EUR"), "service_name": "Haircut",
                    "resource_name": "Ada's chair"},
        "provider": {"name": "Salon Ada"},
        "customer": {"name": "Grace Hopper", **customer},
        "link": f"http://localhost:8000/booking-confirmation/{booking_id}",
        "event": {"type": "booking_paid", "amount": 1750, "currency": "EUR",
                  "amount_display": amount_display(1750, "EUR"), "url": "https://hooks.example.com/totem",
                  "reason": "failing for 5 days", "provider_name": "Salon Ada", "role": "staff",
                  "respond_by": "Tue 02 Jun 2031, 10:00", "approve_link": "http://localhost:8000/console/bookings/x/approve",
                  "decline_link": "http://localhost:8000/console/bookings/x/decline",
                  "failure_code": "authentication_required", "from_status": "requested", "outcome": "lost"},
    }


def test_every_default_template_in_the_database_renders(database_url: str) -> None:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        templates = conn.execute("SELECT * FROM notification_templates WHERE provider_id IS NULL").fetchall()
    assert len(templates) >= 10
    context = _context()

    for template in templates:
        rendered = render(template, context)
        where = f"{template['event']}/{template['audience']}"
        assert rendered.subject and "\n" not in rendered.subject and "{{" not in rendered.subject, where
        assert context["link"] in rendered.text and context["link"] in rendered.html, where
        assert "{{" not in rendered.text + rendered.html, where


@pytest.mark.parametrize("part", ["subject", "text_body", "html_body"])
@pytest.mark.parametrize("source", [
    "{{ booking.id ",                            # syntax
    "{% if %}",                                  # syntax
    "Hello {{ custmer.name }}",                  # undefined variable
    "{{ booking.no_such_field }}",               # undefined attribute
    "{{ ''.__class__.__mro__ }}",                # sandbox escape
    "{{ customer.name.__init__.__globals__ }}",  # sandbox escape
    "{{ 'x' * 100000000 }}",                     # memory bomb
    "{{ 1 / 0 }}",                               # the template's own arithmetic
])
def test_a_broken_template_raises_notification_template_invalid_naming_the_part(part: str, source: str) -> None:
    template = {"subject": "Hi", "text_body": "Hi", "html_body": "<p>Hi</p>", part: source}

    with pytest.raises(NotificationTemplateInvalid) as raised:
        render(template, _context())

    assert raised.value.code is Code.NOTIFICATION_TEMPLATE_INVALID
    assert raised.value.detail.startswith(f"{part}:")


def test_a_customer_name_is_escaped_in_html_but_kept_in_text_and_subject() -> None:
    template = {"subject": "For {{ customer.name }}", "text_body": "Hello {{ customer.name }}",
                "html_body": "<p>Hello {{ customer.name }}</p>"}

    rendered = render(template, _context(name="<script>alert('x')</script> & co"))

    assert rendered.html == "<p>Hello &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co</p>"
    assert rendered.text == "Hello <script>alert('x')</script> & co"
    assert rendered.subject == "For <script>alert('x')</script> & co"


def test_a_line_break_in_a_value_cannot_inject_a_mail_header(sink: Sink) -> None:
    template = {"subject": "For {{ customer.name }}", "text_body": "t", "html_body": "h"}
    rendered = render(template, _context(name="Grace\r\nBcc: victim@example.com"))
    assert rendered.subject == "For Grace Bcc: victim@example.com"

    email = _email(subject=rendered.subject)
    assert send_email(sink.url, MAIL_FROM, email).succeeded
    [path] = sink.messages(email.message_id)
    assert _read(path)["Bcc"] is None


@pytest.mark.parametrize(("amount", "currency", "shown"), [
    (3500, "EUR", "35.00 EUR"),
    (3500, "eur", "35.00 EUR"),
    (5, "USD", "0.05 USD"),
    (0, "GBP", "0.00 GBP"),
    (-250, "EUR", "-2.50 EUR"),
    (3500, "JPY", "3500 JPY"),
    (3500, "krw", "3500 KRW"),
    (1234, "KWD", "1.234 KWD"),
    (123456789012345678, "EUR", "1234567890123456.78 EUR"),  # beyond a float's precision
])
def test_amount_display_formats_minor_units_without_floats(amount: int, currency: str, shown: str) -> None:
    assert amount_display(amount, currency) == shown


@pytest.mark.parametrize("source", [
    "{% for a in range(100000) %}{% for b in range(100000) %}.{% endfor %}{% endfor %}",
    "{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}",
    "{% include 'other' %}",
    "{% import 'other' as o %}",
])
def test_a_template_that_could_cost_more_than_its_length_is_refused(source: str) -> None:
    """No loops, macros, includes or imports: rendering a template costs time in proportion to its length."""
    with pytest.raises(NotificationTemplateInvalid, match="text_body"):
        render({"subject": "s", "text_body": source, "html_body": "h"}, {})
