"""The pools' connections: ours are UTC with dict rows, and an operator's own connection settings survive."""

from __future__ import annotations

from urllib.parse import quote

from shared.db import open_pool


def test_the_urls_own_options_and_application_name_are_kept(isolated_database_url: str) -> None:
    joiner = "&" if "?" in isolated_database_url else "?"
    url = (f"{isolated_database_url}{joiner}application_name=ops-console"
           f"&options={quote('-c statement_timeout=4321 -c TimeZone=Asia/Tokyo')}")
    pool = open_pool(url, max_size=1, name="totem-test")
    try:
        with pool.connection() as conn:
            row = conn.execute("SELECT current_setting('statement_timeout') AS timeout, "
                               "current_setting('TimeZone') AS zone, "
                               "current_setting('application_name') AS name").fetchone()
    finally:
        pool.close()
    assert row == {"timeout": "4321ms", "zone": "UTC", "name": "ops-console"}  # ours win only on the time zone


def test_without_them_the_pool_names_itself(isolated_database_url: str) -> None:
    pool = open_pool(isolated_database_url, max_size=1, name="totem-test")
    try:
        with pool.connection() as conn:
            row = conn.execute("SELECT current_setting('application_name') AS name, "
                               "current_setting('TimeZone') AS zone").fetchone()
    finally:
        pool.close()
    assert row == {"name": "totem-test", "zone": "UTC"}
