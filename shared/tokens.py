"""Bearer tokens: made at random or derived with a server key, always stored as SHA-256, compared by hash.

Kinds, by prefix (one lookup per request, chosen by it):
  ``pk_``  a provider's public token (the booking widget), random, shown once at creation;
  ``ct_``  a customer's token for one booking, derived from the booking id with ``TOKEN_SECRET``;
  ``st_``  a signed-in user's session, random, shown once at sign-in;
  ``ml_``  a magic link's token, derived from the link id with ``TOKEN_SECRET``.

A derived token is never stored anywhere: the worker that emails a magic link, or the gateway that shows a
job's result to its creator, computes it again from the id; the database keeps only its SHA-256. A token is
looked up by the hash of what the caller sent (an index lookup on a uniformly random 32-byte key), so no
secret is ever compared byte by byte; where a secret is compared (the system token) it is in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid

PUBLIC = "pk_"
CUSTOMER = "ct_"
SESSION = "st_"
MAGIC_LINK = "ml_"
PREFIXES = (PUBLIC, CUSTOMER, SESSION, MAGIC_LINK)
SHOWN_PREFIX_LENGTH = 10  # what lists show of a public token: "pk_" and 7 characters


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_token(prefix: str) -> str:
    """``prefix`` + 32 random bytes (256 bits), URL-safe."""
    return prefix + _encode(secrets.token_bytes(32))


def derive(secret: str, prefix: str, subject: uuid.UUID | str) -> str:
    """``prefix`` + HMAC-SHA256(secret, prefix + subject): the same token for the same subject, unguessable
    without the secret."""
    mac = hmac.new(secret.encode(), f"{prefix}{subject}".encode(), hashlib.sha256).digest()
    return prefix + _encode(mac)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def constant_time_equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
