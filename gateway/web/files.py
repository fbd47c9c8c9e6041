"""The pages' static files: plain ES modules and CSS under ``gateway/web/static``, served by the gateway itself
(no build step, no third-party CDN at run time)."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated

from litestar import Response, get
from litestar.params import Parameter

from gateway.access import PUBLIC_ROUTE
from shared.errors import NotFound

STATIC = Path(__file__).parent / "static"
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".json": "application/json"}
STATIC_HEADERS = {"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff",
                  "Cross-Origin-Resource-Policy": "cross-origin"}  # widget.js is loaded by other sites


def static_file(relative: str) -> Response[bytes]:
    """A file under ``static/`` (never outside it), with its content type; 404 otherwise."""
    path = (STATIC / relative).resolve()
    if not path.is_relative_to(STATIC.resolve()) or not path.is_file():
        raise NotFound("no such file")
    media_type = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Response(path.read_bytes(), media_type=media_type, headers=STATIC_HEADERS)


@get("/static/{path:path}", opt=PUBLIC_ROUTE, include_in_schema=False, sync_to_thread=False)
def static(path: Annotated[str, Parameter(max_length=200)]) -> Response[bytes]:
    return static_file(path.lstrip("/"))
