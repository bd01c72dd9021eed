"""Sessions, password and email changes, deactivation: the commands and the events they record."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from auth_api import commands
from auth_api.models import Device
from tests.unit.fakes import FakeUnitOfWork
from tests.unit.test_commands import DEVICE, PASSWORD, POLICY, SECRET, Clock, CountingHasher, _login

NEW_PASSWORD = "a brand new passphrase"
CODES = commands.CodePolicy(max_attempts=3)


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def check(hasher) -> commands.PasswordCheck:
    return commands.PasswordCheck(hasher, POLICY, SECRET)


def _register_and_login(uow, hasher, clock, email="ada@example.com"):
    commands.register(uow, hasher, email, PASSWORD, clock=clock)
    return _login(uow, hasher, clock, email)


def _caller(outcome) -> commands.Caller:
    return commands.Caller(outcome.account.id, outcome.session.session_id)


def _refresh(uow, clock, outcome):
    return commands.refresh(
        uow, outcome.account.id, outcome.session.session_id, outcome.session.refresh_jti, clock=clock
    )


def _types(uow, since: int) -> list[str]:
    return [e.type for e in uow.events()[since:]]


def test_logout_ends_only_the_current_session(uow, hasher, clock):
    first = _register_and_login(uow, hasher, clock)
    second = _login(uow, hasher, clock)
    before = len(uow.events())
    outcome = commands.log_out(uow, _caller(first), clock=clock)
    (ended,) = uow.events()[before:]
    assert (ended.type, ended.id, ended.data["reason"]) == ("SessionEnded", outcome.event_id, "logout")
    assert ended.data["session_id"] == str(first.session.session_id)
    with pytest.raises(commands.SessionRefused, match="ended"):
        _refresh(uow, clock, first)
    with pytest.raises(commands.SessionRefused, match="ended"):
        commands.log_out(uow, _caller(first), clock=clock)  # its access token is dead on the write side
    assert _refresh(uow, clock, second).session is not None


def test_logout_all_ends_every_session(uow, hasher, clock):
    logins = [_register_and_login(uow, hasher, clock)] + [_login(uow, hasher, clock) for _ in range(2)]
    before = len(uow.events())
    outcome = commands.log_out_everywhere(uow, _caller(logins[1]), clock=clock)
    ended = uow.events()[before:]
    assert outcome.ended_sessions == 3 and {e.data["reason"] for e in ended} == {"logout-all"}
    assert {e.data["session_id"] for e in ended} == {str(o.session.session_id) for o in logins}
    for login in logins:
        with pytest.raises(commands.SessionRefused):
            _refresh(uow, clock, login)


def test_a_second_login_from_the_same_agent_is_not_a_new_device(uow, hasher, clock):
    _register_and_login(uow, hasher, clock)
    _login(uow, hasher, clock)
    commands.log_in(
        uow,
        hasher,
        POLICY,
        "ada@example.com",
        PASSWORD,
        replace(DEVICE, user_agent="other/2"),
        failure_secret=SECRET,
        clock=clock,
    )
    started = [e.data["new_device"] for e in uow.events() if e.type == "SessionStarted"]
    assert started == [True, False, True]


def test_a_password_change_ends_the_other_sessions_but_not_this_one(uow, hasher, clock, check):
    current = _register_and_login(uow, hasher, clock)
    other = _login(uow, hasher, clock)
    before = len(uow.events())
    outcome = commands.change_password(uow, check, _caller(current), PASSWORD, NEW_PASSWORD, clock=clock)
    changed, ended = uow.events()[before:]
    assert (changed.type, changed.data) == ("PasswordChanged", {"email": "ada@example.com"})
    assert (ended.data["session_id"], ended.data["reason"]) == (
        str(other.session.session_id),
        "password-change",
    )
    assert outcome.event_id == ended.id and outcome.ended_sessions == 1
    assert _refresh(uow, clock, current).session is not None
    with pytest.raises(commands.SessionRefused):
        _refresh(uow, clock, other)
    with pytest.raises(commands.InvalidCredentials):
        _login(uow, hasher, clock)
    assert _login(uow, hasher, clock, password=NEW_PASSWORD).event_id is not None


def test_a_wrong_current_password_changes_nothing_and_counts_toward_the_lock(uow, hasher, clock, check):
    current = _register_and_login(uow, hasher, clock)
    before = len(uow.events())
    for _ in range(POLICY.max_failures - 1):
        with pytest.raises(commands.WrongPassword):
            commands.change_password(uow, check, _caller(current), "wrong!", NEW_PASSWORD, clock=clock)
    with pytest.raises(commands.AccountLocked):
        commands.change_password(uow, check, _caller(current), "wrong!", NEW_PASSWORD, clock=clock)
    with pytest.raises(commands.AccountLocked):  # locked: even the right password
        commands.change_password(uow, check, _caller(current), PASSWORD, NEW_PASSWORD, clock=clock)
    assert _types(uow, before) == []
    assert hasher.verify(uow.users.rows[current.account.id].password_hash, PASSWORD)


def _request(uow, check, clock, login, new_email="ada@new.example"):
    outcome = commands.request_email_change(
        uow, check, CODES, _caller(login), PASSWORD, new_email, clock=clock
    )
    (event,) = [e for e in uow.events() if e.id == outcome.event_id]
    return event.data["code"], outcome


def test_the_right_code_moves_the_account_to_the_new_address(uow, hasher, clock, check):
    login = _register_and_login(uow, hasher, clock)
    code, requested = _request(uow, check, clock, login, "Ada@NEW.example")
    assert len(code) == 6 and code.isdigit() and requested.expires_at == clock.now + CODES.ttl
    assert uow.users.rows[login.account.id].email == "ada@example.com"  # nothing until confirmed
    stored = uow.email_changes.rows[login.account.id]
    assert code.encode() not in stored.code_hash and stored.new_email == "ada@new.example"
    before = len(uow.events())
    outcome = commands.confirm_email_change(uow, SECRET, CODES, _caller(login), code, clock=clock)
    (changed,) = uow.events()[before:]
    assert (changed.type, changed.id, changed.data) == (
        "EmailChanged",
        outcome.event_id,
        {"email": "ada@new.example", "previous_email": "ada@example.com"},
    )
    with pytest.raises(commands.NoPendingChange):  # single use
        commands.confirm_email_change(uow, SECRET, CODES, _caller(login), code, clock=clock)
    assert _login(uow, hasher, clock, "ada@new.example").event_id is not None


def test_a_wrong_code_costs_a_try_and_the_last_try_ends_the_request(uow, hasher, clock, check):
    login = _register_and_login(uow, hasher, clock)
    code, _ = _request(uow, check, clock, login)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    before = len(uow.events())
    lefts = []
    for _ in range(CODES.max_attempts):
        with pytest.raises(commands.WrongCode) as caught:
            commands.confirm_email_change(uow, SECRET, CODES, _caller(login), wrong, clock=clock)
        lefts.append(caught.value.attempts_left)
    assert lefts == [2, 1, 0]
    with pytest.raises(commands.NoPendingChange):  # the right code is too late now
        commands.confirm_email_change(uow, SECRET, CODES, _caller(login), code, clock=clock)
    assert _types(uow, before) == [] and uow.users.rows[login.account.id].email == "ada@example.com"


def test_an_expired_code_changes_nothing(uow, hasher, clock, check):
    login = _register_and_login(uow, hasher, clock)
    code, _ = _request(uow, check, clock, login)
    clock.advance(seconds=CODES.ttl.total_seconds())
    before = len(uow.events())
    with pytest.raises(commands.NoPendingChange):
        commands.confirm_email_change(uow, SECRET, CODES, _caller(login), code, clock=clock)
    assert _types(uow, before) == [] and uow.users.rows[login.account.id].email == "ada@example.com"


def test_a_new_request_replaces_the_pending_code(uow, hasher, clock, check):
    login = _register_and_login(uow, hasher, clock)
    first, _ = _request(uow, check, clock, login, "one@example.com")
    second, _ = _request(uow, check, clock, login, "two@example.com")
    if first != second:  # one in a million they are equal
        with pytest.raises(commands.WrongCode):
            commands.confirm_email_change(uow, SECRET, CODES, _caller(login), first, clock=clock)
    commands.confirm_email_change(uow, SECRET, CODES, _caller(login), second, clock=clock)
    assert uow.users.rows[login.account.id].email == "two@example.com"


def test_an_address_taken_or_unchanged_is_refused(uow, hasher, clock, check):
    login = _register_and_login(uow, hasher, clock)
    commands.register(uow, hasher, "bob@example.com", PASSWORD, clock=clock)
    with pytest.raises(commands.EmailTaken):
        _request(uow, check, clock, login, "BOB@example.com")
    with pytest.raises(commands.SameEmail):
        _request(uow, check, clock, login, "ada@EXAMPLE.com")
    code, _ = _request(uow, check, clock, login, "carol@example.com")
    commands.register(uow, hasher, "carol@example.com", PASSWORD, clock=clock)  # taken meanwhile
    with pytest.raises(commands.EmailTaken):
        commands.confirm_email_change(uow, SECRET, CODES, _caller(login), code, clock=clock)


def test_a_deactivated_user_can_neither_log_in_nor_refresh_until_reactivated(uow, hasher, clock):
    first = _register_and_login(uow, hasher, clock)
    second = _login(uow, hasher, clock)
    before = len(uow.events())
    outcome = commands.deactivate(uow, "ADA@example.com", reason="abuse", clock=clock)
    events = uow.events()[before:]
    assert [e.type for e in events] == ["UserDeactivated", "SessionEnded", "SessionEnded"]
    assert events[0].data == {"reason": "abuse"} and outcome.ended_sessions == 2
    assert {e.data["reason"] for e in events[1:]} == {"deactivation"}
    for login in (first, second):
        with pytest.raises(commands.SessionRefused):
            _refresh(uow, clock, login)
    with pytest.raises(commands.AccountDeactivated):
        _login(uow, hasher, clock)
    with pytest.raises(commands.InvalidCredentials):  # no hint without the password
        _login(uow, hasher, clock, password="wrong password")
    assert commands.deactivate(uow, first.account.id, clock=clock).event_id is None  # no change, no event
    commands.reactivate(uow, first.account.id, clock=clock)
    assert uow.events()[-1].type == "UserReactivated"
    assert _login(uow, hasher, clock).session is not None


def test_only_a_live_admin_deactivates_and_never_themselves(uow, hasher, clock):
    admin = _register_and_login(uow, hasher, clock, "root@example.com")
    user = _register_and_login(uow, hasher, clock)
    with pytest.raises(commands.Forbidden):
        commands.deactivate(uow, admin.account.id, by=_caller(user), clock=clock)
    commands.change_role(uow, "root@example.com", "admin", grant=True, clock=clock)
    with pytest.raises(commands.Forbidden):
        commands.deactivate(uow, admin.account.id, by=_caller(admin), clock=clock)
    with pytest.raises(commands.UnknownUser):
        commands.deactivate(uow, uuid.uuid4(), by=_caller(admin), clock=clock)
    assert commands.deactivate(uow, user.account.id, by=_caller(admin), clock=clock).event_id
    commands.log_out(uow, _caller(admin), clock=clock)
    with pytest.raises(commands.SessionRefused):  # a logged-out admin token acts no more
        commands.reactivate(uow, user.account.id, by=_caller(admin), clock=clock)


def test_every_new_event_fits_the_contract_and_sequences_stay_dense(uow, hasher, clock, check):
    login = _register_and_login(uow, hasher, clock)
    commands.log_in(
        uow, hasher, POLICY, "ada@example.com", PASSWORD, Device(), failure_secret=SECRET, clock=clock
    )
    _refresh(uow, clock, login)
    commands.change_password(uow, check, _caller(login), PASSWORD, NEW_PASSWORD, clock=clock)
    check_new = commands.PasswordCheck(hasher, POLICY, SECRET)
    outcome = commands.request_email_change(
        uow, check_new, CODES, _caller(login), NEW_PASSWORD, "ada@new.example", clock=clock
    )
    code = uow.events()[-1].data["code"]
    commands.confirm_email_change(uow, SECRET, CODES, _caller(login), code, clock=clock)
    commands.deactivate(uow, login.account.id, clock=clock)
    commands.reactivate(uow, login.account.id, clock=clock)
    events = uow.events(login.account.id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert {e.type for e in events} >= {
        "SessionStarted",
        "SessionRefreshed",
        "SessionEnded",
        "PasswordChanged",
        "EmailChangeRequested",
        "EmailChanged",
        "UserDeactivated",
        "UserReactivated",
    }
    assert outcome.expires_at is not None


def test_deleting_the_account_ends_its_sessions_forgets_it_and_frees_the_email(uow, hasher, clock, check):
    login = _register_and_login(uow, hasher, clock)
    user_id = login.account.id
    assert uow.keys.of(user_id) is not None
    with pytest.raises(commands.WrongPassword):
        commands.delete_account(uow, check, _caller(login), "wrong!", clock=clock)
    assert user_id in uow.users.rows
    before = len(uow.events())
    outcome = commands.delete_account(uow, check, _caller(login), PASSWORD, clock=clock)
    ended, deleted = uow.events()[before:]
    assert (ended.type, ended.data["reason"]) == ("SessionEnded", "deletion")
    assert (deleted.type, deleted.data, deleted.id) == ("UserDeleted", {"by": "self"}, outcome.event_id)
    assert user_id not in uow.users.rows and uow.keys.of(user_id) is None
    assert not [s for s in uow.sessions.rows.values() if s.user_id == user_id]
    with pytest.raises(commands.SessionRefused):
        _refresh(uow, clock, login)
    with pytest.raises(commands.InvalidCredentials):
        _login(uow, hasher, clock)
    again = commands.register(uow, hasher, "ada@example.com", PASSWORD, clock=clock)
    assert again.account.id != user_id


def test_an_admin_deletes_others_never_themselves(uow, hasher, clock):
    admin = _register_and_login(uow, hasher, clock, "root@example.com")
    commands.change_role(uow, "root@example.com", "admin", grant=True, clock=clock)
    user = _register_and_login(uow, hasher, clock)
    with pytest.raises(commands.Forbidden):
        commands.delete_user(uow, SECRET, admin.account.id, by=_caller(user), clock=clock)
    with pytest.raises(commands.Forbidden):
        commands.delete_user(uow, SECRET, admin.account.id, by=_caller(admin), clock=clock)
    outcome = commands.delete_user(uow, SECRET, user.account.id, by=_caller(admin), clock=clock)
    assert uow.events()[-1].data == {"by": "admin"} and outcome.ended_sessions == 1
    with pytest.raises(commands.UnknownUser):
        commands.delete_user(uow, SECRET, "ada@example.com", clock=clock)
