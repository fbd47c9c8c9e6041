"""``totem fake-stripe``: a local stand-in for the few Stripe API endpoints Totem uses, for dev and tests.

Our code talks to it through the real ``stripe`` SDK (``STRIPE_API_BASE`` points the SDK here). It speaks
Stripe's form-encoded requests and JSON shapes, honours ``Idempotency-Key`` the way Stripe does, and sends
events to ``FAKE_STRIPE_WEBHOOK_URL`` signed as Stripe signs them, retrying a delivery not answered 2xx.
Endpoints: create / retrieve / confirm / cancel PaymentIntent, create Refund, create Transfer, list balance
transactions, with Stripe's test-mode cards (``pm_card_chargeDeclined`` declines).

Misbehaviour on demand, for tests (``/_fake/...``, JSON):
* ``POST /_fake/faults {"operation": "payment_intents.create", "times": 2, "when": "before"|"after"}``:
  the next ``times`` calls answer 500. ``before``: nothing happens (a failure in front of Stripe);
  ``after``: the call takes effect and is stored under its idempotency key, but the answer is lost.
  ``"when": "slow", "delay_seconds": 5``: the call waits that long, then takes effect (to kill a caller
  mid-call).
* ``POST /_fake/webhooks {"hold": true, "copies": 1, "delay_seconds": 0}``: hold events instead of sending
  them, send each one ``copies`` times, or send late.
* ``POST /_fake/webhooks/release {"order": "shuffled"|"reversed"|"in_order", "copies": 3, "seed": 1}``.
* ``GET /_fake/requests`` (every API call with its idempotency key and outcome), ``GET /_fake/events``,
  ``GET /_fake/deliveries``.

Where each part lives:
* ``state.py``: the in-memory account, ``StripeError``, ids, form decoding, idempotency replay, events;
* ``objects.py``: PaymentIntents, Charges, Refunds, Transfers and balance transactions;
* ``faults.py``: injected failures (before / after the effect, slow calls);
* ``delivery.py``: the webhook endpoint: ``sign``, hold / copies / delay / release, retries;
* ``routes.py``: the ``/v1/...`` and ``/_fake/...`` handlers; ``app.py``: ``create_app`` from the environment.
"""

from totem.fake_stripe.app import create_app
from totem.fake_stripe.delivery import sign

__all__ = ["create_app", "sign"]
