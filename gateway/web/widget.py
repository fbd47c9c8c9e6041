"""The booking widget: ``/widget/{provider_slug}`` and the embed loader ``/widget.js`` (to be built)."""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler

ROUTES: list[HTTPRouteHandler] = []
