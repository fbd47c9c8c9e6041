"""Customers, and the payment methods a customer keeps for paying later (off-session).

A customer (``cus_…``, ``customer.created``) holds an email and metadata. A payment method is what a
confirmation pays with. Naming a test card (``pm_card_visa``, ``pm_card_chargeDeclined``, any name the
account does not know) makes a new ``pm_…`` each time, as Stripe's shared test payment methods do, so
the id to keep is the one on the intent, never the test card's name; the card it was made from
(``test_cards``) decides how it behaves (``intents.py``). A payment method becomes a customer's
(``customer`` set, ``payment_method.attached``) when a payment with ``setup_future_usage`` and that
``customer`` succeeds; it is then used with that customer only.
"""

from __future__ import annotations

import re
import time
from typing import Any

from totem.fake_stripe.state import FakeStripe, StripeError, new_id

_MADE_HERE = re.compile(r"pm_[0-9a-f]{24}")  # the shape of new_id("pm"): one this account would have made
_VISA_LAST4 = {"pm_card_authenticationRequired": "3184"}
_BRANDS = {"mastercard": ("mastercard", "4444"), "amex": ("amex", "8431"), "discover": ("discover", "1117")}


def create_customer(fake: FakeStripe, params: dict[str, Any]) -> dict[str, Any]:
    customer_id = new_id("cus")
    customer = {
        "id": customer_id, "object": "customer", "email": params.get("email") or None,
        "name": params.get("name") or None, "description": params.get("description") or None,
        "metadata": params.get("metadata", {}), "created": int(time.time()), "livemode": False,
        "balance": 0, "currency": None, "delinquent": False,
        "invoice_settings": {"default_payment_method": None},
    }
    fake.customers[customer_id] = customer
    fake.emit("customer.created", customer)
    return customer


def customer(fake: FakeStripe, customer_id: str, *, status: int = 404, param: str = "id") -> dict[str, Any]:
    """The customer, else Stripe's ``resource_missing``: 404 when it is the path's, 400 when a parameter's."""
    found = fake.customers.get(customer_id)
    if found is None:
        raise StripeError(status, "invalid_request_error", f"No such customer: '{customer_id}'",
                          "resource_missing", param=param)
    return found


def payment_method(fake: FakeStripe, method_id: str, *, status: int = 404, param: str = "id") -> dict[str, Any]:
    found = fake.payment_methods.get(method_id)
    if found is None:
        raise StripeError(status, "invalid_request_error", f"No such PaymentMethod: '{method_id}'",
                          "resource_missing", param=param)
    return found


def payment_method_for(fake: FakeStripe, name: str) -> dict[str, Any]:
    """The payment method a request names: one of this account's, or a new one made from a test card."""
    if name in fake.payment_methods or _MADE_HERE.fullmatch(name):
        return payment_method(fake, name, status=400, param="payment_method")
    visa = ("visa", _VISA_LAST4.get(name, "4242"))
    brand, last4 = next((b for key, b in _BRANDS.items() if key in name.lower()), visa)
    method_id = new_id("pm")
    method = {
        "id": method_id, "object": "payment_method", "type": "card", "customer": None,
        "card": {"brand": brand, "last4": last4, "exp_month": 12, "exp_year": time.gmtime().tm_year + 3,
                 "funding": "credit", "country": "US"},
        "billing_details": {"address": None, "email": None, "name": None, "phone": None},
        "metadata": {}, "created": int(time.time()), "livemode": False,
    }
    fake.payment_methods[method_id] = method
    fake.test_cards[method_id] = name
    return method


def attach(fake: FakeStripe, method: dict[str, Any], customer_id: str) -> None:
    if method["customer"] != customer_id:
        method["customer"] = customer_id
        fake.emit("payment_method.attached", method)


def check_usable(method: dict[str, Any], customer_id: str | None, *, off_session: bool) -> None:
    """A saved payment method pays for its own customer only; off-session, it must be saved to the customer."""
    owner = method["customer"]
    if off_session and customer_id is None:
        raise StripeError(400, "invalid_request_error", "An off-session payment needs the customer whose saved "
                          "payment method it uses: pass customer.", "parameter_missing", param="customer",
                          saved=False)
    if customer_id is None and owner is not None:
        raise StripeError(400, "invalid_request_error", f"The payment method {method['id']} belongs to a customer; "
                          "pass that customer with it.", param="customer")
    if customer_id is not None and (owner is not None or off_session) and owner != customer_id:
        raise StripeError(400, "invalid_request_error", f"The customer does not have a payment method with the ID "
                          f"{method['id']}. The payment method must be attached to the customer.",
                          param="payment_method")
