"""The owner console: ``/console`` (to be built)."""

from __future__ import annotations

ROUTES: list[object] = []
