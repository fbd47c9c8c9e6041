"""Owners and staff sign in by magic link, keep sessions, manage members; what they do lands in an append-only
audit log. End to end through the shared fleet: the gateway, the relay, the notifications pool and the SMTP
sink whose mail folder the tests read the links from."""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from shared.db import QUERIES
from tests.support import SYSTEM, wait_for
from totem.fleet import Fleet

LINK = re.compile(r"(https?://[^\s/]+)(/auth/magic\?token=(ml_[A-Za-z0-9_-]+))")

DB = psycopg.Connection[dict[str, Any]]


def _address(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@Salon.example"


def _mails_to(mail_dir: Path, address: str) -> list[EmailMessage]:
    found = []
    for path in sorted(mail_dir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        if str(message["To"]).lower() == address.lower():
            found.append(message)
    return found


def _tokens(mail_dir: Path, address: str) -> list[str]:
    return [m[3] for message in _mails_to(mail_dir, address)
            if (m := LINK.search(message.get_body(("plain",)).get_content()))]  # type: ignore[union-attr]


def _new_link_token(fleet: Fleet, address: str, seen: list[str]) -> str:
    """Wait for a mail to ``address`` with a link not among ``seen``; its token."""
    assert fleet.mail_dir is not None
    mail_dir = fleet.mail_dir
    fresh = wait_for(lambda: [t for t in _tokens(mail_dir, address) if t not in seen], 30, f"a new link for {address}")
    assert len(fresh) == 1, fresh
    return str(fresh[0])


def _ask_link(client: httpx.Client, fleet: Fleet, address: str) -> str:
    assert fleet.mail_dir is not None
    seen = _tokens(fleet.mail_dir, address)
    response = client.post("/v1/auth/magic-links", json={"email": address})
    assert response.status_code == 202, response.text
    return _new_link_token(fleet, address, seen)


def _session(client: httpx.Client, token: str) -> dict[str, Any]:
    response = client.post("/v1/auth/sessions", json={"token": token})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _sign_in(client: httpx.Client, fleet: Fleet, address: str) -> dict[str, str]:
    """A session of the user with this address, as request headers."""
    return {"Authorization": f"Bearer {_session(client, _ask_link(client, fleet, address))['session_token']}"}


def _user(db: DB, address: str, provider_id: str | None = None, role: str = "owner") -> str:
    user = db.execute(QUERIES["upsert_user"], {"email": address, "platform_role": None}).fetchone()
    assert user is not None
    if provider_id is not None:
        db.execute(QUERIES["upsert_membership"], {"user_id": user["id"], "provider_id": provider_id, "role": role})
    return str(user["id"])


def _provider(db: DB) -> str:
    """A provider with no members yet."""
    row = db.execute(QUERIES["insert_provider"], {
        "slug": f"p-{uuid.uuid4().hex[:12]}", "name": "Test Salon", "time_zone": "Europe/Berlin", "currency": "EUR",
        "commission_bps": 1000, "hold_ttl_seconds": None, "cancellation_policy": Jsonb([])}).fetchone()
    assert row is not None
    return str(row["id"])


@pytest.fixture
def provider(db: DB) -> str:
    return _provider(db)


@pytest.fixture
def client(fleet: Fleet) -> Iterator[httpx.Client]:
    """A client that sends no credential of its own: each request carries what the test gives it."""
    with httpx.Client(base_url=fleet.base_url, timeout=10) as client:
        yield client


def test_a_magic_link_arrives_by_mail_survives_a_scanners_get_and_opens_a_listed_session(
        client: httpx.Client, fleet: Fleet, db: DB, provider: str) -> None:
    address = _address("owner")
    user_id = _user(db, address, provider)

    token = _ask_link(client, fleet, address)
    assert fleet.mail_dir is not None
    [mail] = _mails_to(fleet.mail_dir, address)
    assert mail["Subject"] == "Your sign-in link"
    base, path, _ = LINK.search(mail.get_body(("plain",)).get_content()).groups()  # type: ignore[union-attr]
    assert base == f"http://localhost:{fleet.gateway_port}"  # PUBLIC_URL unset: the gateway's own address

    page = client.get(path)  # what a mail scanner (or the user's browser) does first
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    assert 'method="post" action="/auth/magic"' in page.text and token in page.text
    assert client.get(path).status_code == 200  # twice: still nothing used up

    signed_in = _session(client, token)
    assert signed_in["session_token"].startswith("st_")
    assert signed_in["user"] == {"id": user_id, "email": address, "platform_role": None}
    assert signed_in["memberships"] == [{"provider_id": provider, "role": "owner"}]
    sessions = client.get("/v1/auth/sessions", headers={"Authorization": f"Bearer {signed_in['session_token']}"})
    assert sessions.status_code == 200, sessions.text
    [listed] = sessions.json()["items"]
    assert listed["current"] is True and listed["expires_at"] == signed_in["expires_at"]


def test_the_page_escapes_whatever_the_link_carries(client: httpx.Client) -> None:
    page = client.get("/auth/magic", params={"token": '"><script>alert(1)</script>'})
    assert page.status_code == 200 and "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_the_token_is_stored_nowhere_but_as_its_hash_and_its_mail_goes_to_the_user_alone(
        client: httpx.Client, fleet: Fleet, db: DB, provider: str) -> None:
    address = _address("owner")
    _user(db, address, provider)
    token = _ask_link(client, fleet, address)

    link = db.execute("SELECT id FROM magic_links WHERE token_sha256 = %s",
                      (hashlib.sha256(token.encode()).digest(),)).fetchone()
    assert link is not None
    event = db.execute("SELECT payload::text AS text, payload FROM outbox WHERE aggregate_id = %s",
                       (link["id"],)).fetchone()
    assert event is not None and token not in event["text"] and "provider_id" not in event["payload"]
    deliveries = db.execute("SELECT channel, audience, provider_id, recipient FROM deliveries d "
                            "JOIN outbox o ON o.id = d.event_id WHERE o.aggregate_id = %s", (link["id"],)).fetchall()
    assert deliveries == [{"channel": "email", "audience": "user", "provider_id": None, "recipient": address}]
    assert db.execute("SELECT count(*) AS n FROM notifications n JOIN outbox o ON o.id = n.event_id "
                      "WHERE o.aggregate_id = %s", (link["id"],)).fetchone() == {"n": 0}


def test_a_link_works_once_reuse_is_401(client: httpx.Client, fleet: Fleet, db: DB, provider: str) -> None:
    address = _address()
    _user(db, address, provider, "staff")
    token = _ask_link(client, fleet, address)
    _session(client, token)

    again = client.post("/v1/auth/sessions", json={"token": token})
    assert again.status_code == 401
    assert again.headers["content-type"] == "application/problem+json" and again.json()["code"] == "UNAUTHORIZED"
    page = client.post("/auth/magic", data={"token": token})  # the page's button, too late
    assert page.status_code == 401 and "no longer works" in page.text


def test_an_expired_link_is_401_and_opens_nothing(client: httpx.Client, fleet: Fleet, db: DB, provider: str) -> None:
    address = _address()
    user_id = _user(db, address, provider)
    token = _ask_link(client, fleet, address)
    db.execute("UPDATE magic_links SET expires_at = now() - interval '1 second' WHERE token_sha256 = %s",
               (hashlib.sha256(token.encode()).digest(),))

    response = client.post("/v1/auth/sessions", json={"token": token})
    assert response.status_code == 401 and response.json()["code"] == "UNAUTHORIZED"
    assert db.execute("SELECT count(*) AS n FROM sessions WHERE user_id = %s", (user_id,)).fetchone() == {"n": 0}


def test_a_new_link_revokes_the_earlier_one(client: httpx.Client, fleet: Fleet, db: DB, provider: str) -> None:
    address = _address()
    _user(db, address, provider)
    first = _ask_link(client, fleet, address)
    second = _ask_link(client, fleet, address)

    assert client.post("/v1/auth/sessions", json={"token": first}).status_code == 401
    _session(client, second)


def test_an_unknown_address_gets_the_same_202_and_no_mail_and_no_user(
        client: httpx.Client, fleet: Fleet, db: DB, provider: str) -> None:
    assert fleet.mail_dir is not None
    unknown, known = _address("nobody"), _address("owner")
    _user(db, known, provider)

    refused = client.post("/v1/auth/magic-links", json={"email": unknown})
    _ask_link(client, fleet, known)  # asked later; once its mail is in, the unknown one's would be too
    accepted = client.post("/v1/auth/magic-links", json={"email": known})

    assert (refused.status_code, refused.json()) == (accepted.status_code, accepted.json())
    assert _mails_to(fleet.mail_dir, unknown) == []
    users = db.execute("SELECT count(*) AS n FROM users WHERE lower(email) = lower(%s)", (unknown,)).fetchone()
    assert users == {"n": 0}


def test_links_are_rate_limited_per_address_known_or_not(client: httpx.Client) -> None:
    address = _address("nobody")
    answers = [client.post("/v1/auth/magic-links", json={"email": address}) for _ in range(6)]

    assert [a.status_code for a in answers] == [202] * 5 + [429]
    assert answers[-1].json()["code"] == "RATE_LIMITED" and int(answers[-1].headers["retry-after"]) >= 1
    other = client.post("/v1/auth/magic-links", json={"email": address.upper()})  # the same address
    assert other.status_code == 429


def test_the_pages_button_signs_in_and_shows_the_session_token(
        client: httpx.Client, fleet: Fleet, db: DB, provider: str) -> None:
    address = _address()
    _user(db, address, provider)
    token = _ask_link(client, fleet, address)

    page = client.post("/auth/magic", data={"token": token})
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    session_token = re.search(r"<code>(st_[A-Za-z0-9_-]+)</code>", page.text)
    assert session_token is not None
    listed = client.get("/v1/auth/sessions", headers={"Authorization": f"Bearer {session_token[1]}"})
    assert listed.status_code == 200 and len(listed.json()["items"]) == 1


def test_a_revoked_session_fails_on_its_very_next_request(
        client: httpx.Client, fleet: Fleet, db: DB, provider: str) -> None:
    address = _address()
    _user(db, address, provider)
    laptop, phone = _sign_in(client, fleet, address), _sign_in(client, fleet, address)
    items = client.get("/v1/auth/sessions", headers=laptop).json()["items"]
    phone_id = next(s["id"] for s in items if not s["current"])

    assert client.delete(f"/v1/auth/sessions/{phone_id}", headers=laptop).status_code == 204
    assert client.get("/v1/auth/sessions", headers=phone).status_code == 401
    assert client.delete(f"/v1/auth/sessions/{phone_id}", headers=laptop).status_code == 404  # already ended
    current = client.get("/v1/auth/sessions", headers=laptop).json()["items"][0]["id"]
    assert client.delete(f"/v1/auth/sessions/{current}", headers=laptop).status_code == 204  # sign out
    assert client.get("/v1/auth/sessions", headers=laptop).status_code == 401


def test_a_user_cannot_end_someone_elses_session(client: httpx.Client, fleet: Fleet, db: DB, provider: str) -> None:
    alice, bob = _address("alice"), _address("bob")
    _user(db, alice, provider)
    _user(db, bob, provider, "staff")
    alice_session, bob_session = _sign_in(client, fleet, alice), _sign_in(client, fleet, bob)
    bobs = client.get("/v1/auth/sessions", headers=bob_session).json()["items"][0]["id"]

    assert client.delete(f"/v1/auth/sessions/{bobs}", headers=alice_session).status_code == 404
    assert client.get("/v1/auth/sessions", headers=bob_session).status_code == 200


def test_sign_out_others_keeps_the_current_session(client: httpx.Client, fleet: Fleet, db: DB, provider: str) -> None:
    address = _address()
    _user(db, address, provider)
    sessions = [_sign_in(client, fleet, address) for _ in range(3)]
    current = sessions[-1]

    response = client.post("/v1/auth/sessions/sign-out-others", headers=current)
    assert response.status_code == 200 and response.json() == {"revoked": 2}
    assert [client.get("/v1/auth/sessions", headers=s).status_code for s in sessions] == [401, 401, 200]
    [left] = client.get("/v1/auth/sessions", headers=current).json()["items"]
    assert left["current"] is True


def test_sessions_need_a_signed_in_user(client: httpx.Client) -> None:
    assert client.get("/v1/auth/sessions").status_code == 401
    assert client.get("/v1/auth/sessions", headers=SYSTEM).status_code == 403
    assert client.post("/v1/auth/sessions/sign-out-others", headers=SYSTEM).status_code == 403


def test_owners_invite_list_and_remove_members_but_never_the_last_owner(
        client: httpx.Client, fleet: Fleet, db: DB, provider: str) -> None:
    owner_address, staff_address = _address("owner"), _address("staff")
    owner_id = _user(db, owner_address, provider)
    owner = _sign_in(client, fleet, owner_address)
    members = f"/v1/providers/{provider}/members"

    added = client.post(members, json={"email": staff_address, "role": "staff"}, headers=owner)
    assert added.status_code == 201, added.text
    staff_id = added.json()["user_id"]
    assert client.post(members, json={"email": staff_address.upper(), "role": "owner"},
                       headers=owner).status_code == 409  # the same user, whatever the case
    listed = client.get(members, headers=owner).json()["items"]
    assert [(m["user_id"], m["role"]) for m in listed] == [(owner_id, "owner"), (staff_id, "staff")]
    assert listed[1]["accepted_at"] is None  # invited: grants nothing until the invitation's link is used

    # the invitation is a magic link: the new member signs in with it
    assert fleet.mail_dir is not None
    invite_token = _new_link_token(fleet, staff_address, [])
    [invitation] = _mails_to(fleet.mail_dir, staff_address)
    assert invitation["Subject"] == "You are invited to Test Salon on Totem"
    assert "as staff" in invitation.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    staff = {"Authorization": f"Bearer {_session(client, invite_token)['session_token']}"}
    assert client.get(members, headers=owner).json()["items"][1]["accepted_at"] is not None
    assert client.get(f"/v1/providers/{provider}/notifications", headers=staff).status_code == 200

    assert client.post(members, json={"email": _address(), "role": "staff"}, headers=staff).status_code == 403
    assert client.delete(f"{members}/{owner_id}", headers=staff).status_code == 403
    assert client.get(f"/v1/providers/{provider}/audit-log", headers=staff).status_code == 403

    last_owner = client.delete(f"{members}/{owner_id}", headers=owner)
    assert last_owner.status_code == 409 and "last owner" in last_owner.json()["detail"]
    assert client.delete(f"{members}/{staff_id}", headers=owner).status_code == 204
    assert client.delete(f"{members}/{staff_id}", headers=owner).status_code == 404
    assert [m["user_id"] for m in client.get(members, headers=owner).json()["items"]] == [owner_id]
    assert client.get("/v1/auth/sessions", headers=staff).status_code == 200  # still a user, of no provider
    assert client.get(members, headers=staff).status_code == 403


def test_an_owner_of_one_provider_cannot_touch_anothers_members(
        client: httpx.Client, fleet: Fleet, db: DB, provider: str) -> None:
    other = _provider(db)
    address = _address("owner")
    _user(db, address, provider)
    owner = _sign_in(client, fleet, address)

    assert client.get(f"/v1/providers/{other}/members", headers=owner).status_code == 404
    assert client.post(f"/v1/providers/{other}/members", json={"email": _address(), "role": "owner"},
                       headers=owner).status_code == 404
    assert client.get(f"/v1/providers/{other}/audit-log", headers=owner).status_code == 404


def test_the_audit_log_lists_sign_ins_and_member_changes_and_refuses_any_change(
        client: httpx.Client, fleet: Fleet, db: DB, provider: str) -> None:
    owner_address, staff_address = _address("owner"), _address("staff")
    owner_id = _user(db, owner_address, provider)
    owner = _sign_in(client, fleet, owner_address)
    staff_id = client.post(f"/v1/providers/{provider}/members", json={"email": staff_address, "role": "staff"},
                           headers=owner).json()["user_id"]
    assert client.delete(f"/v1/providers/{provider}/members/{staff_id}", headers=owner).status_code == 204

    log = client.get(f"/v1/providers/{provider}/audit-log", headers=owner)
    assert log.status_code == 200, log.text
    entries = log.json()["items"]
    assert [(e["action"], e["actor_id"], e["target_id"]) for e in entries] == [
        ("member.remove", owner_id, staff_id), ("member.add", owner_id, staff_id),
        ("session.sign_in", owner_id, entries[2]["target_id"])]
    assert entries[0]["actor_role"] == "owner" and entries[0]["before"] == {"email": staff_address, "role": "staff"}
    assert all(e["request_id"] and e["ip"] == "127.0.0.1" for e in entries)

    page = client.get(f"/v1/providers/{provider}/audit-log", params={"limit": 2}, headers=owner).json()
    older = client.get(f"/v1/providers/{provider}/audit-log", params={"limit": 2, "cursor": page["next_cursor"]},
                       headers=owner).json()
    assert [e["id"] for e in page["items"] + older["items"]] == [e["id"] for e in entries]
    assert older["next_cursor"] is None

    for statement in ("UPDATE owner_audit_log SET action = 'member.add' WHERE id = %s",
                      "DELETE FROM owner_audit_log WHERE id = %s"):
        with pytest.raises(psycopg.errors.CheckViolation) as refused:
            db.execute(statement, (entries[0]["id"],))
        assert refused.value.diag.constraint_name == "owner_audit_log_append_only"
