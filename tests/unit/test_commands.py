"""The write side's commands on a fake unit of work: events, versions, lockout, hashing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from auth_api import commands
from auth_api.lockout import LockoutPolicy, failure_key
from auth_api.models import Device
from auth_api.passwords import PasswordHasher
from tests.unit.fakes import FakeUnitOfWork

PASSWORD = "correct horse battery"
DEVICE = Device(ip="192.0.2.7", user_agent="unit/1.0")
POLICY = LockoutPolicy(max_failures=3, window=timedelta(minutes=15), lock_for=timedelta(minutes=10))


class CountingHasher(PasswordHasher):
    """The tests' cheap scheme, counting every hash and verification."""

    def __init__(self, method: str = "pbkdf2:sha256:1000") -> None:
        self.hashed = self.verified = 0
        super().__init__(method)  # hashes the dummy password once

    def hash(self, password: str) -> str:
        self.hashed += 1
        return super().hash(password)

    def verify(self, stored: str, password: str) -> bool:
        self.verified += 1
        return super().verify(stored, password)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def clock() -> Clock:
    return Clock()


SECRET = b"unit-test failure key"


def _login(uow, hasher, clock, email="ada@example.com", password=PASSWORD):
    return commands.log_in(uow, hasher, POLICY, email, password, DEVICE, failure_secret=SECRET, clock=clock)


def _attempt(uow, hasher, clock, email, password="wrong password"):
    """What a login answers, as the route sees it, and the hash work it cost."""
    before = hasher.verified, hasher.hashed
    try:
        _login(uow, hasher, clock, email, password)
        answer = ("ok", None)
    except commands.AccountLocked as exc:
        answer = ("locked", exc.retry_after)
    except commands.InvalidCredentials:
        answer = ("invalid", None)
    return answer, (hasher.verified - before[0], hasher.hashed - before[1])


def test_register_records_user_registered_as_version_1_with_the_normalized_email(uow, hasher, clock):
    outcome = commands.register(
        uow, hasher, "  Ada@Example.COM ", PASSWORD, headers={"request_id": "r1"}, clock=clock
    )
    [(event, headers)] = uow.outbox
    assert (event.type, event.sequence, event.user_id) == ("UserRegistered", 1, outcome.account.id)
    assert event.data == {"email": "ada@example.com", "roles": ["user"]}
    assert event.time == clock.now and event.id == outcome.event_id
    assert headers == {"request_id": "r1"}
    assert uow.kicks == 1


def test_an_email_registers_once_whatever_its_spelling(uow, hasher, clock):
    commands.register(uow, hasher, "ada@xn--bcher-kva.example", PASSWORD, clock=clock)
    with pytest.raises(commands.EmailTaken):
        commands.register(uow, hasher, "ADA@Bücher.example", PASSWORD, clock=clock)
    assert len(uow.outbox) == 1 and uow.kicks == 1
    # ... and it logs in with the very string it registered with.
    assert _login(uow, hasher, clock, "ada@xn--bcher-kva.example").event_id is not None


def test_a_login_bumps_the_version_and_records_the_device(uow, hasher, clock):
    registered = commands.register(uow, hasher, "ada@example.com", PASSWORD, clock=clock)
    clock.advance(seconds=5)
    outcome = _login(uow, hasher, clock)
    logged_in, started = uow.events()[-2:]
    device = {
        "email": "ada@example.com",
        "ip": DEVICE.ip,
        "user_agent": DEVICE.user_agent,
        "session_id": str(outcome.session.session_id),
    }
    assert (logged_in.type, logged_in.sequence, logged_in.data) == ("UserLoggedIn", 2, device)
    assert logged_in.id == outcome.event_id  # the login's event; its wait covers both
    assert (started.type, started.sequence, outcome.sequence) == ("SessionStarted", 3, 3)
    assert started.data == {**device, "new_device": True}
    assert outcome.account.id == registered.account.id
    assert uow.users.locked == [registered.account.id]  # the version is bumped under the row lock


def test_unknown_and_known_emails_cost_the_same_hash_work(uow, hasher, clock):
    commands.register(uow, hasher, "ada@example.com", PASSWORD, clock=clock)
    unknown = _attempt(uow, hasher, clock, "nobody@example.com")
    known = _attempt(uow, hasher, clock, "ada@example.com")
    assert unknown == known == (("invalid", None), (1, 0))


def test_an_unknown_email_fails_and_locks_exactly_like_a_known_one(uow, hasher, clock):
    """Fresh, failing, locked, lock expired: step by step the same answer and hash work."""
    commands.register(uow, hasher, "ada@example.com", PASSWORD, clock=clock)
    trails: dict[str, list] = {"ada@example.com": [], "nobody@example.com": []}
    for email, trail in trails.items():
        start = clock.now
        for _ in range(POLICY.max_failures + 2):  # failing, then locking, then locked
            trail.append(_attempt(uow, hasher, clock, email))
            clock.advance(seconds=30)
        trail.append(_attempt(uow, hasher, clock, email, PASSWORD))  # the right one, still locked
        clock.advance(minutes=11)  # the lock ends
        trail.append(_attempt(uow, hasher, clock, email))
        clock.now = start  # the second email replays the very same moments
    assert trails["ada@example.com"] == trails["nobody@example.com"]
    answers = [answer for answer, _ in trails["nobody@example.com"]]
    assert answers == [("invalid", None)] * (POLICY.max_failures - 1) + [
        ("locked", 600),
        ("locked", 570),
        ("locked", 540),
        ("locked", 510),
        ("invalid", None),
    ]
    assert {work for _, work in trails["nobody@example.com"]} == {(1, 0)}


def test_failures_are_counted_per_normalised_email_under_a_key_that_is_not_the_email(uow, hasher, clock):
    for spelling in ("Nobody@Example.com", " nobody@example.COM"):
        _attempt(uow, hasher, clock, spelling)
    [(key, count)] = uow.failures.rows.items()
    assert count.failures == 2
    assert len(key) == 32 and b"nobody" not in key  # an HMAC-SHA256, no address in clear
    assert key == failure_key(SECRET, "nobody@example.com") != failure_key(b"other", "nobody@example.com")


def test_failures_lock_the_account_within_the_window_and_the_lock_expires(uow, hasher, clock):
    commands.register(uow, hasher, "ada@example.com", PASSWORD, clock=clock)
    for _ in range(POLICY.max_failures - 1):
        with pytest.raises(commands.InvalidCredentials):
            _login(uow, hasher, clock, password="wrong")
        clock.advance(minutes=1)
    with pytest.raises(commands.AccountLocked) as locked:
        _login(uow, hasher, clock, password="wrong")
    assert locked.value.retry_after == 600
    clock.advance(minutes=4)
    with pytest.raises(commands.AccountLocked) as still:  # even the right password
        _login(uow, hasher, clock)
    assert still.value.retry_after == 360
    reasons = [e.data.get("reason") for e in uow.events() if e.type == "UserLoginFailed"]
    assert reasons == ["invalid_password"] * POLICY.max_failures + ["account_locked"]
    clock.advance(minutes=6, seconds=1)
    assert _login(uow, hasher, clock).event_id is not None
    versions = [e.sequence for e in uow.events()]
    assert versions == list(range(1, len(versions) + 1))


def test_failures_outside_the_window_do_not_add_up(uow, hasher, clock):
    commands.register(uow, hasher, "ada@example.com", PASSWORD, clock=clock)
    for _ in range(POLICY.max_failures * 2):
        with pytest.raises(commands.InvalidCredentials):
            _login(uow, hasher, clock, password="wrong")
        clock.advance(minutes=8)  # two failures per 15-minute window at most


def test_a_success_resets_the_failure_count(uow, hasher, clock):
    commands.register(uow, hasher, "ada@example.com", PASSWORD, clock=clock)
    for _ in range(POLICY.max_failures - 1):
        with pytest.raises(commands.InvalidCredentials):
            _login(uow, hasher, clock, password="wrong")
    _login(uow, hasher, clock)
    for _ in range(POLICY.max_failures - 1):
        with pytest.raises(commands.InvalidCredentials):
            _login(uow, hasher, clock, password="wrong")


def test_a_hash_of_an_older_scheme_is_upgraded_on_the_next_successful_login(uow, clock):
    old = CountingHasher("pbkdf2:sha256:1000")
    registered = commands.register(uow, old, "ada@example.com", PASSWORD, clock=clock)
    new = CountingHasher("argon2id")
    _login(uow, new, clock)
    stored = uow.users.rows[registered.account.id].password_hash
    assert stored.startswith("$argon2id$") and new.verify(stored, PASSWORD)
    assert not new.needs_rehash(stored)
    with pytest.raises(commands.InvalidCredentials):  # a wrong password upgrades nothing
        _login(uow, CountingHasher("scrypt"), clock, password="wrong")
    assert uow.users.rows[registered.account.id].password_hash == stored


def test_role_changes_carry_the_whole_role_set_and_no_op_emits_nothing(uow, hasher, clock):
    commands.register(uow, hasher, "ada@example.com", PASSWORD, clock=clock)
    granted = commands.change_role(uow, "ADA@example.com", "admin", grant=True, clock=clock)
    again = commands.change_role(uow, "ada@example.com", "admin", grant=True, clock=clock)
    revoked = commands.change_role(uow, "ada@example.com", "admin", grant=False, clock=clock)
    assert again.event_id is None and granted.event_id and revoked.event_id
    assert [(e.type, e.sequence, e.data.get("roles")) for e in uow.events()[1:]] == [
        ("UserRoleGranted", 2, ["admin", "user"]),
        ("UserRoleRevoked", 3, ["user"]),
    ]
    with pytest.raises(commands.UnknownUser):
        commands.change_role(uow, "nobody@example.com", "admin", grant=True, clock=clock)


def test_only_commits_with_events_kick_the_relay(uow, hasher, clock):
    commands.register(uow, hasher, "ada@example.com", PASSWORD, clock=clock)
    commands.change_role(uow, "ada@example.com", "user", grant=True, clock=clock)  # no change
    assert uow.kicks == 1


def test_a_login_starts_a_session_named_in_its_event(uow, hasher, clock):
    commands.register(uow, hasher, "ada@example.com", PASSWORD, clock=clock)
    outcome = _login(uow, hasher, clock)
    assert outcome.session is not None
    session = uow.sessions.rows[outcome.session.session_id]
    assert session.refresh_jti == outcome.session.refresh_jti and session.ended_at is None
    assert uow.events()[-1].data["session_id"] == str(session.id)


def _refresh(uow, clock, outcome, jti=None):
    grant = outcome.session
    return commands.refresh(uow, outcome.account.id, grant.session_id, jti or grant.refresh_jti, clock=clock)


def test_each_refresh_rotates_and_a_reused_token_ends_the_whole_session(uow, hasher, clock):
    commands.register(uow, hasher, "ada@example.com", PASSWORD, clock=clock)
    login = _login(uow, hasher, clock)
    first = _refresh(uow, clock, login)
    second = _refresh(uow, clock, first)
    assert len({login.session.refresh_jti, first.session.refresh_jti, second.session.refresh_jti}) == 3
    refreshed = [e for e in uow.events() if e.type == "SessionRefreshed"]
    assert [e.data["session_id"] for e in refreshed] == [str(login.session.session_id)] * 2
    with pytest.raises(commands.SessionRefused, match="already used"):
        _refresh(uow, clock, login)  # the login's token, spent
    ended = uow.events()[-1]
    assert (ended.type, ended.data) == (
        "SessionEnded",
        {"session_id": str(login.session.session_id), "reason": "reuse-detected"},
    )
    with pytest.raises(commands.SessionRefused, match="ended"):
        _refresh(uow, clock, second)  # the family is gone: the newest token too


def test_refresh_refuses_a_locked_account_and_an_unknown_session(uow, hasher, clock):
    commands.register(uow, hasher, "ada@example.com", PASSWORD, clock=clock)
    login = _login(uow, hasher, clock)
    for _ in range(POLICY.max_failures):
        with pytest.raises((commands.InvalidCredentials, commands.AccountLocked)):
            _login(uow, hasher, clock, password="wrong")
    with pytest.raises(commands.SessionRefused, match="locked"):
        _refresh(uow, clock, login)
    clock.advance(minutes=11)
    assert _refresh(uow, clock, login).session is not None  # the lock is over, the token unspent
    with pytest.raises(commands.SessionRefused, match="unknown"):
        commands.refresh(uow, login.account.id, uuid.uuid4(), uuid.uuid4(), clock=clock)
