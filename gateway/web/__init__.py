"""The pages people use: the booking widget (``gateway.web.widget``) and the owner console
(``gateway.web.console``). Both are plain ES modules and CSS (``gateway.web.files``) that call the same public
JSON API as any other client. ``routes()`` is what ``gateway.app`` mounts."""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler

from gateway.web import console, files, widget


def routes() -> list[HTTPRouteHandler]:
    """The static files, then each page module's own handlers."""
    return [files.static, *widget.ROUTES, *console.ROUTES]
