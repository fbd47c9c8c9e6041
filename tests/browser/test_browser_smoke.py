"""The browser harness itself: Debian's chromium opens a gateway page and a screenshot is written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from totem.fleet import Fleet


def test_chromium_renders_a_gateway_page(page: Page, fleet: Fleet, shot: Callable[[Page, str], Path]) -> None:
    page.goto(f"{fleet.base_url}/auth/magic")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    assert shot(page, "magic-link-page").stat().st_size > 0
