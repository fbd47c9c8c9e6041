"""The owner console: ``/console`` and its pages are one HTML shell that loads plain ES modules
(``static/console/*.js``). The modules call the JSON API with the signed-in user's session token (kept in the
tab's ``sessionStorage``), so the console is held to exactly the access rules of any other API client, and a
staff session sees what the API lets staff see. The shell is the same for every page; the modules route on
``location.pathname``. A path that is no console page is a 404 problem, like any unknown URL."""

from __future__ import annotations

import re
from typing import Annotated

from litestar import Response, get
from litestar.enums import MediaType
from litestar.handlers import HTTPRouteHandler
from litestar.params import Parameter

from gateway.access import PUBLIC_ROUTE
from gateway.problems import Problem
from gateway.web.files import STATIC
from shared.errors import Code

SHELL = STATIC / "console" / "index.html"
PAGES = re.compile(r"(|sign-in|bookings|money|settings|bookings/[0-9a-fA-F-]{36}(/approve|/decline)?)/?")
SHELL_HEADERS = {
    "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"}
CANCELLABLE = ("requested", "pending_payment", "paid")


def _shell() -> Response[bytes]:
    return Response(SHELL.read_bytes(), media_type=MediaType.HTML, headers=SHELL_HEADERS)


@get("/console", opt=PUBLIC_ROUTE, include_in_schema=False, sync_to_thread=False)
def console_home() -> Response[bytes]:
    return _shell()


@get("/console/{page:path}", opt=PUBLIC_ROUTE, include_in_schema=False, sync_to_thread=False)
def console_page(page: Annotated[str, Parameter(max_length=120)]) -> Response[bytes]:
    if not PAGES.fullmatch(page.lstrip("/")):
        raise Problem(Code.NOT_FOUND, f"the console has no page /console{page}")
    return _shell()


ROUTES: list[HTTPRouteHandler] = [console_home, console_page]
