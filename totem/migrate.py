"""Apply the ordered plain-SQL migrations in sql/migrations with yoyo (idempotent; yoyo's lock makes two
processes starting at once safe: the second waits, then finds nothing to apply)."""

from __future__ import annotations

import psycopg
from psycopg import sql
from yoyo import get_backend, read_migrations

from shared.db import SQL_DIR


def _yoyo_url(database_url: str) -> str:
    scheme, rest = database_url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgres", "postgresql") else database_url


def migrate(database_url: str) -> list[str]:
    backend = get_backend(_yoyo_url(database_url))
    migrations = read_migrations(str(SQL_DIR / "migrations"))
    with backend.lock(timeout=120):
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


def create_database(admin_url: str, name: str) -> None:
    """CREATE DATABASE if missing (the embedded default and test runs make their own)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
