"""Which servers a test run uses: a fresh Debian's own PostgreSQL cluster listens on 127.0.0.1:5432 but asks
for a password over TCP, so a run that only checked the port would fail every test with fe_sendauth. The
run must see that it cannot log in, and start private servers instead (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import _postgres_login_refused, _redis_refused
from totem.embedded import PrivatePostgres, free_port


@pytest.fixture
def password_postgres(tmp_path: Path) -> Iterator[PrivatePostgres]:
    """A server configured as Debian's is: TCP logins need a password (scram-sha-256)."""
    server = PrivatePostgres(tmp_path).start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("ALTER ROLE postgres PASSWORD 'not-known-to-the-tests'")
        (server.pgdata / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n")
        server.stop()  # a restart, not a reload: the new rules are in force before the first login attempt
        server.start(port=server.port)
        yield server
    finally:
        server.stop()


def test_a_server_that_asks_for_a_password_is_not_used(password_postgres: PrivatePostgres) -> None:
    refused = _postgres_login_refused(password_postgres.url())
    assert refused is not None and "password" in refused


def test_servers_that_do_not_answer_are_not_used() -> None:
    assert _postgres_login_refused(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    assert _redis_refused(f"redis://127.0.0.1:{free_port()}/0")


def test_the_servers_this_run_uses_let_it_log_in(server_urls: tuple[str, str]) -> None:
    assert _postgres_login_refused(server_urls[0]) is None
    assert _redis_refused(server_urls[1]) is None
