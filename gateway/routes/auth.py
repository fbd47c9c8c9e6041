"""Sign-in by magic link, and a user's own sessions.

* ``POST /v1/auth/magic-links`` answers the same 202 whether or not the address is known (no enumeration:
  the link is made after the answer is sent, so not even the time taken differs), and is rate limited per
  address and per client IP before anything else happens.
* The emailed link opens ``GET /auth/magic``, a page whose buttons use the token: a mail scanner that
  follows links does not use it up. "Sign in to the console" exchanges it with ``POST /v1/auth/sessions``
  from the page's script (``static/console/magic.js``), keeps the session in the tab's ``sessionStorage`` and
  opens ``/console``: the session token never travels in a URL. "Show a session token" (and the same button
  without script) POSTs ``/auth/magic``, which uses the link up and shows the token for API use.
* A signed-in user lists their sessions, ends one, or ends all but the current one; an ended session fails
  on its very next request (``use_session`` reads the table at each one, nothing is cached).
"""

from __future__ import annotations

import hashlib
import html
import logging
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.background_tasks import BackgroundTask
from litestar.enums import MediaType, RequestEncodingType
from litestar.params import Body, Parameter

from gateway.access import Access, Grant, allow, ip_bucket, request_ip
from gateway.problems import Problem, problem_responses, request_id_of
from gateway.ratelimit import Bucket
from gateway.state import GatewayState
from shared import accounts
from shared.db import QUERIES
from shared.errors import Code
from shared.schemas import Email

log = logging.getLogger("totem.auth")

PUBLIC = allow(Access.PUBLIC)
SIGNED_IN = allow(Access.USER)
MagicToken = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                           "script-src 'self'; connect-src 'self'; base-uri 'none'; "
                                           "frame-ancestors 'none'"}
ACCEPTED = ("If this address belongs to a Totem account, a sign-in link is on its way to it. "
            "The link works once, within 15 minutes.")


class MagicLinkRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email


class MagicLinkAccepted(msgspec.Struct):
    detail: str


class SessionRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: MagicToken  # the magic link's token


class MagicForm(msgspec.Struct):
    token: MagicToken
    to: Literal["console", "token"] = "token"  # which button: without script, both show the token


class SessionUser(msgspec.Struct):
    id: UUID
    email: str
    platform_role: Literal["admin"] | None


class Membership(msgspec.Struct):
    provider_id: UUID
    role: Literal["owner", "staff"]


class SessionCreated(msgspec.Struct):
    session_token: str  # shown in this answer only: send it as `Authorization: Bearer <session_token>`
    expires_at: datetime
    user: SessionUser
    memberships: list[Membership]


class SessionView(msgspec.Struct):
    id: UUID
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime  # the absolute end
    ends_at: datetime  # the end if it stays idle from now (the sooner of idle and absolute)
    ip: str | None
    user_agent: str | None
    current: bool


class SessionList(msgspec.Struct):
    items: list[SessionView]


class SignedOutOthers(msgspec.Struct):
    revoked: int


def _ip(request: Request[Any, Any, Any], state: GatewayState) -> str | None:
    ip = request_ip(request, state.settings)
    return None if ip == "unknown" else ip


async def _limit(request: Request[Any, Any, Any], state: GatewayState, email: str) -> None:
    """Per address and per client IP, before anything is looked up (an unknown address costs the same)."""
    settings = state.settings
    per_hour = settings.rate_limit_email_per_hour
    verdict = await state.limiter.admit([
        Bucket("email", hashlib.sha256(email.lower().encode()).hexdigest(), per_hour / 3600, max(1, int(per_hour))),
        Bucket("sign_in_ip", ip_bucket(request_ip(request, settings)), settings.rate_limit_ip_rps,
               settings.rate_limit_ip_burst)])
    request.scope["state"]["rate_limit"] = verdict
    if not verdict.admitted:
        raise Problem(Code.RATE_LIMITED, f"too many sign-in links asked for; retry in {verdict.retry_after:.0f} s",
                      headers=verdict.headers())


async def _send_link(state: GatewayState, email: str) -> None:
    """After the answer: a link for a known address, nothing at all for an unknown one."""
    try:
        async with state.pool.connection() as conn:
            await accounts.issue_magic_link(conn, state.settings, email, "sign_in")
    except Exception:
        log.exception("could not issue a sign-in link")


@post("/v1/auth/magic-links", opt=PUBLIC, status_code=202, tags=["auth"],
      summary="Email a sign-in link to an account's address (the same answer for any address)",
      responses=problem_responses(Code.VALIDATION_FAILED, Code.RATE_LIMITED))
async def request_magic_link(request: Request[Any, Any, Any], state: GatewayState,
                             data: MagicLinkRequest) -> Response[MagicLinkAccepted]:
    await _limit(request, state, data.email)
    return Response(MagicLinkAccepted(detail=ACCEPTED), status_code=202,
                    background=BackgroundTask(_send_link, state, data.email))


def _page(title: str, body: str, status: int = 200) -> Response[str]:
    document = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f'<meta name="robots" content="noindex"><title>{html.escape(title)} · Totem</title>'
                f'<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}}'
                f'code{{word-break:break-all;background:#f3f3f3;padding:.2rem}}button{{font-size:1.1rem;'
                f'padding:.5rem 1.5rem}}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>')
    return Response(document, status_code=status, media_type=MediaType.HTML, headers=PAGE_HEADERS)


# The two pages an emailed link opens are for a browser (HTML, friendly errors), not operations of the API,
# like the widget and the console: the OpenAPI document leaves them out; API clients use /v1/auth/sessions.
@get("/auth/magic", opt=PUBLIC, tags=["auth"], media_type=MediaType.HTML, include_in_schema=False,
     summary="The page an emailed link opens (it does not use the link up)")
async def magic_link_page(token: Annotated[str | None, Parameter(max_length=200)] = None) -> Response[str]:
    if not token:
        return _page("This link is incomplete", "<p>Open the whole link from the email, or ask for a new one.</p>",
                     400)
    return _page("Sign in to Totem",
                 '<form method="post" action="/auth/magic" id="magic">'
                 f'<input type="hidden" name="token" value="{html.escape(token, quote=True)}">'
                 "<p>Press the button to sign in. The link works once.</p>"
                 '<p><button type="submit" name="to" value="console">Sign in to the console</button></p>'
                 '<p><button type="submit" name="to" value="token">Show a session token for the API</button></p>'
                 '<p id="magic-status" role="status" aria-live="polite"></p></form>'
                 '<script type="module" src="/static/console/magic.js"></script>')


@post("/auth/magic", opt=PUBLIC, status_code=200, tags=["auth"], media_type=MediaType.HTML, include_in_schema=False,
      summary="The sign-in page's button: use the link up and show the session token")
async def magic_link_sign_in(request: Request[Any, Any, Any], state: GatewayState,
                             data: Annotated[MagicForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
                             ) -> Response[str]:
    signed_in = await _sign_in(request, state, data.token)
    if signed_in is None:
        return _page("This link no longer works",
                     "<p>It was used already, has expired (links last 15 minutes), or a newer one was sent. "
                     "Ask for a new one.</p>", 401)
    token = html.escape(signed_in.session_token)
    return _page("You are signed in",
                 f"<p>Signed in as <b>{html.escape(signed_in.email)}</b> until {signed_in.expires_at:%Y-%m-%d %H:%M} "
                 f"UTC. Your session token (shown once):</p><p><code>{token}</code></p>"
                 "<p>Send it with each API request as <code>Authorization: Bearer &lt;token&gt;</code>.</p>"
                 + ("<p>The console itself needs JavaScript: ask for a new link from "
                    '<a href="/console/sign-in">/console/sign-in</a> in a browser that runs it.</p>'
                    if data.to == "console" else ""))


async def _sign_in(request: Request[Any, Any, Any], state: GatewayState, token: str) -> accounts.SignedIn | None:
    async with state.pool.connection() as conn:
        return await accounts.sign_in(conn, state.settings, token, ip=_ip(request, state),
                                      user_agent=request.headers.get("user-agent"),
                                      request_id=request_id_of(request) or None)


@post("/v1/auth/sessions", opt=PUBLIC, status_code=201, tags=["auth"],
      summary="Use a magic link's token up and open a session (its token is shown once)",
      responses=problem_responses(Code.VALIDATION_FAILED, Code.UNAUTHORIZED))
async def create_session(request: Request[Any, Any, Any], state: GatewayState, data: SessionRequest) -> SessionCreated:
    signed_in = await _sign_in(request, state, data.token)
    if signed_in is None:
        raise Problem(Code.UNAUTHORIZED, "the link's token is unknown, used, revoked or expired; ask for a new link")
    return SessionCreated(
        session_token=signed_in.session_token, expires_at=signed_in.expires_at,
        user=SessionUser(id=signed_in.user_id, email=signed_in.email,
                         platform_role="admin" if signed_in.platform_role == "admin" else None),
        memberships=[msgspec.convert(m, Membership) for m in signed_in.memberships])


def _session_of(grant: Grant) -> tuple[UUID, UUID]:
    caller = grant.caller
    if caller.session_id is None:  # Access.USER admits only session callers; kept for the type checker
        raise Problem(Code.FORBIDDEN, "only a signed-in user has sessions")
    return UUID(caller.id), caller.session_id


@get("/v1/auth/sessions", opt=SIGNED_IN, tags=["auth"], summary="The caller's own open sessions, newest first",
     responses=problem_responses(Code.UNAUTHORIZED, Code.FORBIDDEN))
async def list_sessions(state: GatewayState, grant: Grant) -> SessionList:
    user_id, current = _session_of(grant)
    async with state.pool.connection() as conn:
        cur = await conn.execute(QUERIES["list_user_sessions"], {
            "user_id": user_id, "current": current, "idle_seconds": state.settings.session_idle_seconds,
            "limit": 200})
        rows = await cur.fetchall()
    return SessionList(items=[msgspec.convert(row, SessionView) for row in rows])


@delete("/v1/auth/sessions/{session_id:uuid}", opt=SIGNED_IN, status_code=204, tags=["auth"],
        summary="End one of the caller's own sessions (the current one too: sign out)",
        responses=problem_responses(Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NOT_FOUND))
async def delete_session(request: Request[Any, Any, Any], state: GatewayState, grant: Grant,
                         session_id: UUID) -> None:
    user_id, current = _session_of(grant)
    async with state.pool.connection() as conn:
        ended = await accounts.revoke_session(conn, user_id, session_id, current=current,
                                              request_id=request_id_of(request) or None, ip=_ip(request, state))
    if not ended:
        raise Problem(Code.NOT_FOUND, f"you have no open session {session_id}")


@post("/v1/auth/sessions/sign-out-others", opt=SIGNED_IN, status_code=200, tags=["auth"],
      summary="End every session of the caller but the current one",
      responses=problem_responses(Code.UNAUTHORIZED, Code.FORBIDDEN))
async def sign_out_others(request: Request[Any, Any, Any], state: GatewayState, grant: Grant) -> SignedOutOthers:
    user_id, current = _session_of(grant)
    async with state.pool.connection() as conn:
        ended = await accounts.revoke_other_sessions(conn, user_id, current, request_id=request_id_of(request) or None,
                                                     ip=_ip(request, state))
    return SignedOutOthers(revoked=len(ended))


ROUTES = [request_magic_link, magic_link_page, magic_link_sign_in, create_session, list_sessions, delete_session,
          sign_out_others]
