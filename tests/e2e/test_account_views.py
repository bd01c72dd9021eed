"""The account views over HTTP: profile, sessions, timeline and the account at a past time.

The events are produced to Kafka directly (the account-lifecycle commands of the write side
land separately), for users that exist only in the topic, with access tokens signed by the
session's key: the whole pipeline between the topic and the read API runs as deployed.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote

import pytest

from event_contract import Event
from tests.support.lifecycle import AccountBuilder
from tests.support.pipeline import produce
from tests.support.tokens import mint, private_key
from tests.support.waiting import wait_until
from web.consistency_token import ConsistencyClaim, sign_consistency_token

PROBLEM = "application/problem+json"
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def _at(minutes: int) -> datetime:
    return START + timedelta(minutes=minutes)


def _consistency(event: Event) -> dict[str, str]:
    """The header a write of this event would have answered (signed as the write API does)."""
    claim = ConsistencyClaim(event.user_id, event.id, event.sequence)
    return {"X-Consistency-Token": sign_consistency_token(private_key(), claim, timedelta(minutes=5))}


def _read(system, path: str, token: str, after: Event):
    """GET with the consistency token of ``after``; a 503 (not projected yet) is retried."""
    return wait_until(
        lambda: (r := system.query(path, token, headers=_consistency(after))).status_code != 503 and r,
        timeout=60,
        interval=0.2,
        what=f"{path} once {after.type} is projected",
    )


class Life:
    """One account's events (produced), its token, and what a test needs to know about them."""

    def __init__(self) -> None:
        self.account = AccountBuilder()
        self.token = mint(str(self.account.user), ["user"])

    @property
    def id(self) -> str:
        return str(self.account.user)

    @property
    def last(self) -> Event:
        return self.account.events[-1]


@pytest.fixture(scope="module")
def life(system) -> Life:
    """Registered at +0, logged in on two devices (+10, +20), the first session refreshed
    (+30), the password changed (+40, ending the second), the email changed (+50), a change
    requested but not confirmed (+55), deactivated (+60, ending the first), reactivated (+70)."""
    life = Life()
    account = life.account
    account.register(_at(0))
    life.first_email = account.email
    life.phone = account.login(_at(10), "10.0.0.1", "phone/1")
    life.laptop = account.login(_at(20), "10.0.0.2", "laptop/2")
    account.add("SessionRefreshed", {"session_id": str(life.phone)}, _at(30))
    account.add("PasswordChanged", {"email": account.email}, _at(40))
    account.add("SessionEnded", {"session_id": str(life.laptop), "reason": "password-change"}, _at(40))
    account.change_email(_at(50))
    account.change_email(_at(55), confirm=False)
    life.pending = account.events[-1]
    account.add("UserDeactivated", {"reason": "support ticket"}, _at(60))
    account.add("SessionEnded", {"session_id": str(life.phone), "reason": "deactivation"}, _at(60))
    account.add("UserReactivated", {}, _at(70))
    produce(account.events)
    return life


def test_the_profile_shows_email_status_roles_last_login_and_password_change(system, life):
    me = _read(system, "/users/me", life.token, life.last)
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["email"] == life.account.email != life.first_email
    assert body["status"] == "active" and body["roles"] == ["user"]
    assert datetime.fromisoformat(body["registered_at"]) == _at(0)
    assert datetime.fromisoformat(body["last_login_at"]) == _at(20)
    assert datetime.fromisoformat(body["password_changed_at"]) == _at(40)
    assert body["version"] == len(life.account.events) == 14
    assert system.query(f"/users/{life.id}", life.token).json() == body
    admin = mint(str(uuid.uuid4()), ["admin"])
    assert system.query(f"/users/{life.id}", admin).json() == body
    stranger = mint(str(uuid.uuid4()), ["user"])
    assert system.query(f"/users/{life.id}", stranger).status_code == 403


def test_a_deactivated_account_shows_as_deactivated(system):
    life = Life()
    life.account.register(_at(0))
    life.account.add("UserDeactivated", {"reason": None}, _at(1))
    produce(life.account.events)
    assert _read(system, "/users/me", life.token, life.last).json()["status"] == "deactivated"


def test_sessions_lists_the_active_ones_with_device_and_last_use(system):
    life = Life()
    account = life.account
    account.register(_at(0))
    phone = account.login(_at(1), "10.0.0.1", "phone/1")
    laptop = account.login(_at(2), "10.0.0.2", "laptop/2")
    tablet = account.login(_at(3), "10.0.0.3", "phone/1")  # a device seen before
    account.add("SessionRefreshed", {"session_id": str(phone)}, _at(9))
    account.add("SessionEnded", {"session_id": str(laptop), "reason": "logout"}, _at(10))
    # A session whose refresh arrived but whose start did not (yet): not listed.
    account.add("SessionRefreshed", {"session_id": str(uuid.uuid4())}, _at(11))
    produce(account.events)
    sessions = _read(system, "/users/me/sessions", life.token, life.last)
    assert sessions.status_code == 200, sessions.text
    listed = [
        (
            s["session_id"],
            s["user_agent"],
            s["ip"],
            s["new_device"],
            datetime.fromisoformat(s["last_used_at"]),
        )
        for s in sessions.json()
    ]
    # Most recently used first; the ended laptop session is gone.
    assert listed == [
        (str(phone), "phone/1", "10.0.0.1", True, _at(9)),
        (str(tablet), "phone/1", "10.0.0.3", False, _at(3)),
    ]
    assert datetime.fromisoformat(sessions.json()[0]["started_at"]) == _at(1)


def test_the_history_is_every_event_newest_first_in_pages(system, life):
    first = _read(system, f"/users/{life.id}/history?limit=5", life.token, life.last)
    assert first.status_code == 200, first.text
    entries, url = list(first.json()), first.headers.get("Link")
    pages = 1
    while url:
        page = system.query(re.match(r'<([^>]+)>; rel="next"', url).group(1), life.token)
        assert page.status_code == 200 and len(page.json()) <= 5
        entries.extend(page.json())
        url = page.headers.get("Link")
        pages += 1
    events = life.account.events
    assert pages == 3  # 14 events, 5 a page
    assert [e["sequence"] for e in entries] == list(range(len(events), 0, -1))
    assert [(e["event_id"], e["type"]) for e in entries] == [(str(e.id), e.type) for e in reversed(events)]
    assert {e["type"] for e in entries} == {e.type for e in events}
    by_type = {e["type"]: e for e in reversed(entries)}  # the newest of each type
    # What some events show; never the email change code.
    assert by_type["EmailChangeRequested"]["data"] == {
        "new_email": life.pending.data["new_email"],
        "expires_at": life.pending.data["expires_at"],
    }
    assert all("code" not in e["data"] for e in entries)
    assert by_type["SessionEnded"]["data"] == {"session_id": str(life.phone), "reason": "deactivation"}
    assert by_type["UserDeactivated"]["data"] == {"reason": "support ticket"}
    assert by_type["EmailChanged"]["data"]["previous_email"] == life.first_email
    assert by_type["SessionStarted"]["data"]["user_agent"] == "laptop/2"
    assert datetime.fromisoformat(by_type["UserReactivated"]["occurred_at"]) == _at(70)
    # /users/me/history is the same.
    mine = system.query("/users/me/history?limit=200", life.token).json()
    assert mine == entries


def test_the_history_is_for_the_user_or_an_admin(system, life):
    admin = mint(str(uuid.uuid4()), ["admin"])
    assert len(system.query(f"/users/{life.id}/history?limit=200", admin).json()) == 14
    stranger = mint(str(uuid.uuid4()), ["user"])
    assert system.query(f"/users/{life.id}/history", stranger).status_code == 403
    assert system.query(f"/users/{uuid.uuid4()}/history", admin).status_code == 404


@pytest.mark.parametrize(
    "cursor",
    ["%%%", "MTI", "YWJjfGRlZg", "OTk5OTk5OTk5OTk5fDAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMA"],
    ids=["not-base64", "one-part", "not-a-number", "out-of-range"],
)
def test_a_bad_history_cursor_is_422(system, life, cursor):
    response = system.query(f"/users/{life.id}/history?cursor={cursor}", life.token)
    assert response.status_code == 422 and response.headers["Content-Type"] == PROBLEM


def test_the_account_as_of_a_past_time(system, life):
    assert _read(system, "/users/me", life.token, life.last).status_code == 200

    def as_of(moment: str, path: str = f"/users/{life.id}"):
        return system.query(f"{path}?as_of={quote(moment)}", life.token)

    before = as_of((_at(0) - timedelta(seconds=1)).isoformat())
    assert before.status_code == 404 and before.headers["Content-Type"] == PROBLEM
    registered = as_of(_at(0).isoformat()).json()
    assert (registered["email"], registered["version"], registered["last_login_at"]) == (
        life.first_email,
        1,
        None,
    )
    # Between the password change and the email change: the first email, two logins, 8 events.
    middle = as_of((_at(45)).astimezone(UTC).isoformat().replace("+00:00", "Z")).json()
    assert (middle["email"], middle["login_count"], middle["version"]) == (life.first_email, 2, 8)
    assert datetime.fromisoformat(middle["password_changed_at"]) == _at(40)
    # Deactivated at +60, reactivated at +70 (an offset other than UTC names the same time).
    india = timezone(timedelta(hours=5, minutes=30))
    deactivated = as_of(_at(65).astimezone(india).isoformat(), "/users/me").json()
    assert (deactivated["status"], deactivated["email"]) == ("deactivated", life.account.email)
    # Now: exactly the live view.
    live = system.query(f"/users/{life.id}", life.token).json()
    assert as_of(datetime.now(UTC).isoformat()).json() == live
    # The edges of RFC 3339 (offsets to 23:59, years 1 to 9999) answer, never a 500.
    assert as_of("0001-01-01T00:00:00+01:00").status_code == 404  # before year 1 in UTC
    assert as_of("0439-02-17T12:06:37+22:18").status_code == 404  # past PostgreSQL's 15:59
    assert as_of("9999-12-31T23:59:59-23:59").json() == live  # after year 9999 in UTC


@pytest.mark.parametrize(
    "moment",
    [
        "yesterday",
        "2026-03-01",
        "2026-03-01T09:00:00",  # no offset
        "2026-03-01T09:00:00 01:00",  # a + sent unencoded arrives as a space
        "2026-13-01T09:00:00Z",
        "2026-03-01T09:00:60Z",
        "2026-03-01T09:00:00+24:00",
        "1700000000",
        "2026-03-01T09:00:00Z\x00",
        "",
    ],
)
def test_a_malformed_as_of_is_422(system, life, moment):
    response = system.query(f"/users/{life.id}?as_of={quote(moment)}", life.token)
    assert response.status_code == 422 and response.headers["Content-Type"] == PROBLEM
    assert "as_of" in response.json()["detail"]


def test_the_new_views_keep_read_your_writes(system):
    """A consistency token names a write: every new view waits for it (bounded), and refuses
    another user's token at once."""
    life = Life()
    life.account.register(_at(0))
    life.account.add("PasswordChanged", {"email": life.account.email}, _at(1))
    produce(life.account.events)
    history = _read(system, "/users/me/history", life.token, life.last)
    assert [e["type"] for e in history.json()] == ["PasswordChanged", "UserRegistered"]
    other = Life()
    other_token = _consistency(AccountBuilder(other.account.user).register(_at(0)).events[0])
    for path in (
        "/users/me/history",
        f"/users/{life.id}/history",
        "/users/me/sessions",
        "/users/me?as_of=2026-01-01T00:00:00Z",
    ):
        refused = system.query(path, life.token, headers=other_token)
        assert refused.status_code == 403, (path, refused.text)
    never = ConsistencyClaim(life.account.user, uuid.uuid4(), 10**6)
    waiting = {"X-Consistency-Token": sign_consistency_token(private_key(), never, timedelta(minutes=5))}
    response = system.query(f"/users/{life.id}/history", life.token, headers=waiting)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
