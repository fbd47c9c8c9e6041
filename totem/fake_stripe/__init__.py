"""``totem fake-stripe``: a local stand-in for the few Stripe API endpoints Totem uses, for dev and tests.

Our code talks to it through the real ``stripe`` SDK (``STRIPE_API_BASE`` points the SDK here). It speaks
Stripe's form-encoded requests and JSON shapes in ONE API version, the one our client pins (``version.py``:
a request naming another ``Stripe-Version`` gets Stripe's 400), honours ``Idempotency-Key``
the way Stripe does, and sends events to ``FAKE_STRIPE_WEBHOOK_URL`` signed as Stripe signs them, retrying
a delivery not answered 2xx. Endpoints: create / retrieve Customer; retrieve PaymentMethod; create (with
``confirm``, ``off_session``, ``capture_method``, ``customer``, ``setup_future_usage``) / retrieve / confirm /
capture / cancel PaymentIntent (confirm also from a browser, with a ``pk_test_…`` key and the intent's
``client_secret``, as Stripe.js does); retrieve Charge; create /
retrieve Refund (``refunds.py``); create Transfer (with ``source_transaction``); list balance transactions;
Connect: create / retrieve Account (Express), create Account Link, and the onboarding page at its URL, which
sends ``account.updated`` with ``account`` set (``accounts.py``). Stripe's test-mode cards:
``pm_card_chargeDeclined`` (any name containing "Declined") declines; a name containing
``offSessionDeclined`` (``pm_card_visa_offSessionDeclined``) pays on-session and declines off-session with
``authentication_required``; a test card makes a new ``pm_…`` each time it is used, as in Stripe.
Security deposits: a manual-capture intent is authorised (``requires_capture``), then captured in part or in
full, cancelled, or left to lapse.

Misbehaviour on demand, for tests (``/_fake/...``, JSON):
* ``POST /_fake/faults {"operation": "payment_intents.create", "times": 2, "when": "before"|"after"}``:
  the next ``times`` calls answer 500. ``before``: nothing happens (a failure in front of Stripe);
  ``after``: the call takes effect and is stored under its idempotency key, but the answer is lost.
  ``"when": "slow", "delay_seconds": 5``: the call waits that long, then takes effect (to kill a caller
  mid-call). Operations: ``customers.create``, ``customers.retrieve``, ``payment_methods.retrieve``,
  ``payment_intents.create`` / ``retrieve`` / ``confirm`` / ``capture`` / ``cancel``, ``charges.retrieve``,
  ``refunds.create``, ``refunds.retrieve``,
  ``transfers.create``, ``balance_transactions.list``, ``accounts.create`` / ``retrieve``,
  ``account_links.create`` (a read fails on any armed fault). ``DELETE /_fake/faults`` disarms them all.
* ``POST /_fake/webhooks {"hold": true, "copies": 1, "delay_seconds": 0, "attempts": 6}``: hold events instead
  of sending them, send each one ``copies`` times, send late, or retry an unanswered one more times;
  ``GET /_fake/webhooks`` reads these with ``held`` and ``in_flight`` (deliveries not finished).
* ``POST /_fake/webhooks/release {"order": "shuffled"|"reversed"|"in_order", "copies": 3, "seed": 1}``.
* ``POST /_fake/payment_intents/{id}/expire_authorization``: an authorisation (``requires_capture``) lapses
  now, as it would after its days: cancelled with ``cancellation_reason: "expired"``, ``charge.expired``
  and ``payment_intent.canceled``.
* ``POST /_fake/refunds {"payment_intent": "pi_…", "amount": 700}``: a refund made in the Dashboard (no
  metadata of ours). ``POST /_fake/refunds/{id}/succeed``: a pending refund settles (``refund.updated``).
  ``POST /_fake/refunds/{id}/fail {"failure_reason": "expired_or_canceled_card"}``: a created refund fails
  (``refund.updated``, ``refund.failed``; the money is back in the balance and off the charge).
* ``GET /_fake/requests`` (every API call with its idempotency key and outcome), ``GET /_fake/events``
  (every event, recorded when emitted, before any delivery), ``GET /_fake/deliveries``, ``GET /_fake/objects``
  (every PaymentIntent, Charge, Refund and Transfer as it stands now: what a checker compares the ledger with).

Where each part lives:
* ``version.py``: the API version it speaks;
* ``state.py``: the in-memory account, ``StripeError``, ids, parameters, idempotency replay, events,
  balance transactions;
* ``customers.py``: Customers and the payment methods they keep (test cards, attachment);
* ``intents.py``: PaymentIntents and their Charges: confirm, decline, authorise, capture, cancel, lapse;
* ``authentication.py``: 3-D Secure (``pm_card_authenticationRequired``) and its page ``/3d_secure_2/hosted``;
* ``refunds.py``: Refunds: created (API or Dashboard), pending → succeeded, failed after creation;
* ``objects.py``: Transfers and the balance transactions list;
* ``accounts.py``: Connect accounts, Account Links, the onboarding page, what a transfer demands of them;
* ``faults.py``: injected failures (before / after the effect, slow calls);
* ``delivery.py``: the webhook endpoint: ``sign``, hold / copies / delay / release, retries;
* ``cors.py``: any site's page may call it, as Stripe's API allows (Stripe.js confirms from the browser);
* ``routes.py``: the ``/v1/...`` and ``/_fake/...`` handlers; ``app.py``: ``create_app`` from the environment.
"""

from totem.fake_stripe.app import create_app
from totem.fake_stripe.delivery import sign

__all__ = ["create_app", "sign"]
