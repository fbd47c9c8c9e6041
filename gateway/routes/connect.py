"""Stripe Connect onboarding: an owner asks for the provider's Express connected account and gets, through
a ``connect.onboard`` job (Stripe is called by workers only), the Account Link that finishes onboarding in
Stripe's pages and returns to the owner console's settings. Idempotency-Key required; a new request (a new
key) gets the same account with a fresh link, since links are single-use and expire within minutes."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import Request, Response, post

from gateway.access import OWNERS, Grant, allow, request_ip
from gateway.idempotency import Check, keyed_command
from gateway.openapi_docs import KEY_REQUIRED
from gateway.problems import Problem, problem_responses
from gateway.state import GatewayState
from shared.connect import ONBOARDING_RETURN_PATH, OnboardJob
from shared.errors import Code
from shared.registry import CONNECT_ONBOARD
from shared.schemas import Accepted


class StripeAccountRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Nothing to give: the account is the provider's. Its body is ``{}``."""


@post("/v1/providers/{provider_id:uuid}/stripe-account", status_code=202, opt={**allow(OWNERS), **KEY_REQUIRED},
      summary="Create the provider's Stripe Express account (once) and an onboarding link",
      description="Accepted as a job (Idempotency-Key required); the job's result is {provider_id, account_id, "
                  "created, url, expires_at}: open url to finish onboarding in Stripe, which returns to the "
                  "console's settings. Asking again gives the same account with a fresh link.",
      responses=problem_responses(Code.VALIDATION_FAILED, Code.IDEMPOTENCY_KEY_MISSING, Code.UNAUTHORIZED,
                                  Code.FORBIDDEN, Code.NOT_FOUND, Code.IDEMPOTENCY_KEY_IN_FLIGHT,
                                  Code.IDEMPOTENCY_KEY_REUSED, Code.RATE_LIMITED))
async def create_stripe_account(request: Request[Any, Any, Any], state: GatewayState, grant: Grant,
                                provider_id: UUID, data: StripeAccountRequest) -> Response[Accepted]:
    command = keyed_command(request, data)
    settings_page = f"{state.settings.links_base}{ONBOARDING_RETURN_PATH}"
    caller = grant.caller
    payload = OnboardJob(provider_id=provider_id, refresh_url=f"{settings_page}?stripe=refresh",
                         return_url=f"{settings_page}?stripe=return", **caller.actor(provider_id),
                         request_id=request.scope["state"].get("request_id"),
                         ip=request_ip(request, state.settings))

    missing = Problem(Code.NOT_FOUND, f"provider {provider_id} does not exist (or is deleted)")
    return await state.acceptor.accept(request, command, job_type=CONNECT_ONBOARD, payload=payload,
                                       check=Check("check_provider_live", {"provider_id": provider_id}, missing))
