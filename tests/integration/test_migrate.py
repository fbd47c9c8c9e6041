"""`totem migrate` is idempotent and safe when several processes start at once on a fresh database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg

from tests.support import ROOT
from totem.migrate import create_database, drop_database


def test_concurrent_migrations_apply_each_migration_once(server_urls: tuple[str, str]) -> None:
    admin_url = server_urls[0]
    name = f"totem_test_migrate_{uuid.uuid4().hex[:8]}"
    create_database(admin_url, name)
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        env = {**os.environ, "DATABASE_URL": url}
        procs = [subprocess.Popen([sys.executable, "-m", "totem.cli", "migrate"], cwd=ROOT, env=env,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
        outputs = [proc.communicate(timeout=120)[1] for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
        assert sum("0001_init" in out for out in outputs) == 1
        assert sum("none (up to date)" in out for out in outputs) == 2
        again = subprocess.run([sys.executable, "-m", "totem.cli", "migrate"], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "up to date" in again.stderr
        with psycopg.connect(url) as conn:
            migrations = len(list((ROOT / "sql" / "migrations").glob("*.sql")))
            assert conn.execute("SELECT count(*) FROM _yoyo_migration").fetchone() == (migrations,)
    finally:
        drop_database(admin_url, name)
