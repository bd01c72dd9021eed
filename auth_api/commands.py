"""Commands of the write side: register, log in, sessions, password, email, roles, deactivation.

Each is a plain function over a unit of work, so routes, CLI commands and tests call the
same code. Passwords are hashed and verified outside any transaction: no row lock (and no
database connection) is held while a hash is computed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError

from auth_api import keyed
from auth_api.emails import normalize_email
from auth_api.lockout import FailureCount, LockoutPolicy, failure_key
from auth_api.models import Device, EmailChange, User, UserSession
from auth_api.passwords import PasswordHasher
from auth_api.unit_of_work import UnitOfWork
from event_contract import Event

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class EmailTaken(Exception):
    """The normalized email is already registered."""


class InvalidCredentials(Exception):
    """Unknown email or wrong password; deliberately indistinguishable."""


class AccountLocked(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"account locked for {retry_after} s")
        self.retry_after = retry_after


class UnknownUser(Exception):
    pass


class AccountDeactivated(Exception):
    """The right password for an account an operator deactivated."""


class WrongPassword(Exception):
    """The current password given to confirm a change is wrong."""


class Forbidden(Exception):
    """The caller may not do this (not an admin, or an admin acting on their own account)."""


class SameEmail(Exception):
    """The requested address is the account's address already."""


class NoPendingChange(Exception):
    """No email change is waiting for a code (never requested, confirmed, expired or used up)."""


class WrongCode(Exception):
    def __init__(self, attempts_left: int) -> None:
        super().__init__(f"wrong code, {attempts_left} attempts left")
        self.attempts_left = attempts_left


@dataclass(frozen=True)
class Account:
    """What a command's caller needs of the user, read before the commit expired the row."""

    id: uuid.UUID
    email: str
    roles: tuple[str, ...]

    @classmethod
    def of(cls, user: User) -> Account:
        return cls(user.id, user.email, tuple(user.roles))


class SessionRefused(Exception):
    """A refresh token that no longer opens its session (ended, reused, account locked...)."""


@dataclass(frozen=True)
class SessionGrant:
    """What the next refresh token must carry: its session and its (single-use) id."""

    session_id: uuid.UUID
    refresh_jti: uuid.UUID


@dataclass(frozen=True)
class Outcome:
    account: Account
    event_id: uuid.UUID | None  # the command's last event; None when it changed nothing
    session: SessionGrant | None = None
    sequence: int | None = None  # the user's version after the command
    ended_sessions: int = 0
    expires_at: datetime | None = None  # of an email-change code

    @classmethod
    def of(cls, account: Account, events: list[Event], **extra: object) -> Outcome:
        last = events[-1] if events else None
        ended = sum(1 for e in events if e.type == "SessionEnded")
        return cls(
            account,
            last.id if last else None,
            sequence=last.sequence if last else None,
            ended_sessions=ended,
            **extra,  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class Caller:
    """Who sends an authenticated command: the access token's user and session."""

    user_id: uuid.UUID
    session_id: uuid.UUID


@dataclass(frozen=True)
class PasswordCheck:
    """What confirming a password needs: the hasher, the lockout rules and the write secret."""

    hasher: PasswordHasher
    policy: LockoutPolicy
    secret: bytes


@dataclass(frozen=True)
class CodePolicy:
    ttl: timedelta = timedelta(minutes=15)
    max_attempts: int = 5

def register(
    uow: UnitOfWork,
    hasher: PasswordHasher,
    email: str,
    password: str,
    *,
    headers: dict[str, str] | None = None,
    clock: Clock = utc_now,
) -> Outcome:
    password_hash = hasher.hash(password)
    with uow:
        user = User.register(normalize_email(email), password_hash, clock())
        uow.users.add(user)
        account = Account.of(user)
        try:
            (event,) = uow.commit(headers)
        except IntegrityError as exc:  # the unique email index: taken, or a concurrent twin won
            raise EmailTaken(account.email) from exc
    return Outcome(account, event.id, sequence=event.sequence)


def log_in(
    uow: UnitOfWork,
    hasher: PasswordHasher,
    policy: LockoutPolicy,
    email: str,
    password: str,
    device: Device,
    *,
    failure_secret: bytes,
    headers: dict[str, str] | None = None,
    clock: Clock = utc_now,
) -> Outcome:
    """The account and its UserLoggedIn event id, or raise; failures are recorded as events.

    No oracle: an unknown email costs one hash verification like a known one, its failures
    are counted and lock it like a known one's (the counter is per email, account or not),
    and it raises the same exceptions with the same values in every state.
    """
    email = normalize_email(email)
    key = failure_key(failure_secret, email)
    with uow:
        found = uow.users.by_email(email)
        user_id, stored = (found.id, found.password_hash) if found else (None, hasher.dummy_hash)
    # Outside the transaction: the same hashing work whether or not the email exists.
    valid = hasher.verify(stored, password) and user_id is not None
    upgraded = hasher.hash(password) if valid and hasher.needs_rehash(stored) else None
    with uow:
        now = clock()
        count = uow.failures.lock(key)  # first, always: one lock order for every login
        user = uow.users.get(user_id, for_update=True) if user_id is not None else None
        retry_after = count.retry_after(now)
        if retry_after is not None:  # locked: even the right password is refused
            if user is not None:
                user.fail_login(device, "account_locked", now)
            uow.commit(headers)
            raise AccountLocked(retry_after)
        if user is None or not valid or user.password_hash != stored:  # unknown, wrong, or changed meanwhile
            after = count.after_failure(policy, now)
            uow.failures.save(key, after)
            if user is not None:
                user.fail_login(device, "invalid_password", now, after)
            uow.commit(headers)
            locked_for = after.retry_after(now)
            if locked_for is not None:  # this failure reached the limit
                raise AccountLocked(locked_for)
            raise InvalidCredentials()
        uow.failures.save(key, FailureCount())
        if not user.active:  # only said to whoever knows the password
            uow.commit(headers)
            raise AccountDeactivated()
        device_key = keyed.device_key(failure_secret, device.user_agent)
        new_device = device_key is None or not uow.sessions.known_device(user.id, device_key)
        session = UserSession.start(user.id, now, device_key)
        uow.sessions.add(session)
        logged_in = user.log_in(device, now, session, new_device=new_device, new_password_hash=upgraded)
        account = Account.of(user)
        grant = SessionGrant(session.id, session.refresh_jti)
        events = uow.commit(headers)
    # The answer names the UserLoggedIn event (its login-history entry); the sequence is the
    # last one written (SessionStarted), so a consistency wait covers both.
    return Outcome(account, logged_in.id, grant, events[-1].sequence)


def refresh(
    uow: UnitOfWork,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    refresh_jti: uuid.UUID,
    *,
    headers: dict[str, str] | None = None,
    clock: Clock = utc_now,
) -> Outcome:
    """Rotate the session's refresh token; a token used twice ends its whole session."""
    with uow:
        user = uow.users.get(user_id, for_update=True)  # the user's lock first, as every command
        session = uow.sessions.get(session_id, for_update=True)
        if user is None or session is None or session.user_id != user.id:
            raise SessionRefused("unknown session")
        if session.ended_at is not None:
            raise SessionRefused("the session has ended")
        now = clock()
        if session.refresh_jti != refresh_jti:
            # A spent token came back: whoever holds the family, it is no longer safe.
            user.end_session(session, "reuse-detected", now)
            uow.commit(headers)
            raise SessionRefused("the refresh token was already used; the session is ended")
        if user.failure_count.retry_after(now) is not None:
            raise SessionRefused("the account is locked")
        if not user.active:  # deactivation ended the session; this is a second guard
            raise SessionRefused("the account is deactivated")
        jti, event = user.refresh_session(session, now)
        grant = SessionGrant(session.id, jti)
        account = Account.of(user)
        uow.commit(headers)
    return Outcome(account, event.id, grant, event.sequence)


def change_role(
    uow: UnitOfWork,
    email: str,
    role: str,
    *,
    grant: bool,
    headers: dict[str, str] | None = None,
    clock: Clock = utc_now,
) -> Outcome:
    """Grant or revoke a role; no event when nothing changes."""
    with uow:
        user = uow.users.by_email(normalize_email(email), for_update=True)
        if user is None:
            raise UnknownUser(email)
        event = user.change_role(role, grant=grant, now=clock())
        account = Account.of(user)
        uow.commit(headers)
    return Outcome(account, event.id if event else None)




# --- authenticated commands of the account's owner ---


def _caller(uow: UnitOfWork, caller: Caller) -> tuple[User, UserSession]:
    """The caller's account and session, the account locked; refused unless both are live.

    Checked on every command, so a logged-out or deactivated session's access token stops
    working on the write side at once (the read side accepts it until it expires).
    """
    user = uow.users.get(caller.user_id, for_update=True)
    session = uow.sessions.get(caller.session_id)
    if user is None or session is None or session.user_id != user.id:
        raise SessionRefused("unknown session")
    if not session.active:
        raise SessionRefused("the session has ended")
    if not user.active:
        raise SessionRefused("the account is deactivated")
    return user, session


def log_out(
    uow: UnitOfWork, caller: Caller, *, headers: dict[str, str] | None = None, clock: Clock = utc_now
) -> Outcome:
    """End the caller's session."""
    with uow:
        user, session = _caller(uow, caller)
        user.end_session(session, "logout", clock())
        account = Account.of(user)
        events = uow.commit(headers)
    return Outcome.of(account, events)


def log_out_everywhere(
    uow: UnitOfWork, caller: Caller, *, headers: dict[str, str] | None = None, clock: Clock = utc_now
) -> Outcome:
    """End every session of the caller, the current one included."""
    with uow:
        user, _ = _caller(uow, caller)
        user.end_sessions(uow.sessions.active_of(user.id), "logout-all", clock())
        account = Account.of(user)
        events = uow.commit(headers)
    return Outcome.of(account, events)


def _read_hash(uow: UnitOfWork, caller: Caller) -> tuple[str, str]:
    with uow:
        user, _ = _caller(uow, caller)
        return user.password_hash, user.email


def _confirm_password(
    uow: UnitOfWork,
    check: PasswordCheck,
    caller: Caller,
    email: str,
    stored: str,
    valid: bool,
    now: datetime,
    headers: dict[str, str] | None,
) -> tuple[User, UserSession]:
    """Inside the caller's unit of work: the caller's account if ``valid``, else count a failure.

    A wrong current password counts against the email's lockout like a failed login: a
    stolen access token must not turn this into an unthrottled password oracle.
    """
    key = failure_key(check.secret, email)
    count = uow.failures.lock(key)  # the counter's lock first, as in log_in
    user, session = _caller(uow, caller)
    retry_after = count.retry_after(now)
    if retry_after is not None:
        raise AccountLocked(retry_after)
    if not valid or user.password_hash != stored:  # wrong, or changed meanwhile
        after = count.after_failure(check.policy, now)
        uow.failures.save(key, after)
        uow.commit(headers)
        locked_for = after.retry_after(now)
        if locked_for is not None:
            raise AccountLocked(locked_for)
        raise WrongPassword()
    uow.failures.save(key, FailureCount())
    return user, session


def change_password(
    uow: UnitOfWork,
    check: PasswordCheck,
    caller: Caller,
    current_password: str,
    new_password: str,
    *,
    headers: dict[str, str] | None = None,
    clock: Clock = utc_now,
) -> Outcome:
    """Set a new password, given the current one; every other session ends."""
    stored, email = _read_hash(uow, caller)
    # Both hashes outside any transaction: no row lock is held while they are computed.
    valid = check.hasher.verify(stored, current_password)
    new_hash = check.hasher.hash(new_password) if valid else None
    with uow:
        now = clock()
        user, session = _confirm_password(uow, check, caller, email, stored, valid, now, headers)
        assert new_hash is not None
        others = [s for s in uow.sessions.active_of(user.id) if s.id != session.id]
        user.change_password(new_hash, now, others)
        account = Account.of(user)
        events = uow.commit(headers)
    return Outcome.of(account, events)


def request_email_change(
    uow: UnitOfWork,
    check: PasswordCheck,
    codes: CodePolicy,
    caller: Caller,
    password: str,
    new_email: str,
    *,
    headers: dict[str, str] | None = None,
    clock: Clock = utc_now,
) -> Outcome:
    """Ask to move the account to ``new_email``: a one-time code goes there (by the notifier).

    A new request replaces a pending one (its code stops working).
    """
    new_email = normalize_email(new_email)
    stored, email = _read_hash(uow, caller)
    valid = check.hasher.verify(stored, password)
    with uow:
        now = clock()
        user, _ = _confirm_password(uow, check, caller, email, stored, valid, now, headers)
        if new_email == user.email:
            raise SameEmail()
        taken = uow.users.by_email(new_email)
        if taken is not None:
            raise EmailTaken(new_email)
        code, expires_at = keyed.new_code(), now + codes.ttl
        change = EmailChange(
            user_id=user.id,
            new_email=new_email,
            code_hash=keyed.code_hash(check.secret, user.id, code),
            expires_at=expires_at,
            attempts=0,
        )
        uow.email_changes.put(change)
        user.request_email_change(new_email, code, expires_at, now)
        account = Account.of(user)
        events = uow.commit(headers)
    return Outcome.of(account, events, expires_at=expires_at)


def confirm_email_change(
    uow: UnitOfWork,
    secret: bytes,
    codes: CodePolicy,
    caller: Caller,
    code: str,
    *,
    headers: dict[str, str] | None = None,
    clock: Clock = utc_now,
) -> Outcome:
    """Move the account to the pending address if ``code`` is its code; a wrong code costs a try."""
    with uow:
        now = clock()
        user, _ = _caller(uow, caller)
        change = uow.email_changes.get(user.id)
        if change is None or change.expires_at <= now:
            if change is not None:
                uow.email_changes.remove(change)
                uow.commit(headers)
            raise NoPendingChange()
        if not keyed.same_code(secret, user.id, code, change.code_hash):
            change.attempts += 1
            left = codes.max_attempts - change.attempts
            if left <= 0:  # used up: only a new request (and a new code) helps now
                uow.email_changes.remove(change)
            uow.commit(headers)
            raise WrongCode(max(left, 0))
        new_email = change.new_email  # read now: after a failed flush the row cannot be loaded
        uow.email_changes.remove(change)
        user.change_email(new_email, now)
        account = Account.of(user)
        try:
            events = uow.commit(headers)
        except IntegrityError as exc:  # the address was registered since the request
            raise EmailTaken(new_email) from exc
    return Outcome.of(account, events)


def _erase(uow: UnitOfWork, secret: bytes, user: User, by: str, now: datetime) -> None:
    """End the sessions, record UserDeleted, and forget the account in this database: its rows,
    its email's failure counter, and the data key that opens every event it ever had."""
    user.erase(by, now, uow.sessions.active_of(user.id))
    uow.failures.save(failure_key(secret, user.email), FailureCount())
    uow.users.remove(user)
    uow.keys.destroy(user.id)


def delete_account(
    uow: UnitOfWork,
    check: PasswordCheck,
    caller: Caller,
    password: str,
    *,
    headers: dict[str, str] | None = None,
    clock: Clock = utc_now,
) -> Outcome:
    """Erase the caller's account, given its password (``DELETE /users/me``)."""
    stored, email = _read_hash(uow, caller)
    valid = check.hasher.verify(stored, password)
    with uow:
        now = clock()
        user, _ = _confirm_password(uow, check, caller, email, stored, valid, now, headers)
        account = Account.of(user)
        _erase(uow, check.secret, user, "self", now)
        events = uow.commit(headers)
    return Outcome.of(account, events)


def delete_user(
    uow: UnitOfWork,
    secret: bytes,
    target: uuid.UUID | str,
    *,
    by: Caller | None = None,
    headers: dict[str, str] | None = None,
    clock: Clock = utc_now,
) -> Outcome:
    """Erase an account (by id or email) as an admin or operator; never one's own this way."""
    with uow:
        _admin(uow, by)
        found = _target(uow, target, for_update=False)
        # The email's counter lock before the user's, in the order every login takes them.
        uow.failures.lock(failure_key(secret, found.email))
        user = _target(uow, found.id)
        if by is not None and user.id == by.user_id:
            raise Forbidden("admins delete their own account with DELETE /users/me")
        account = Account.of(user)
        _erase(uow, secret, user, "admin", clock())
        events = uow.commit(headers)
    return Outcome.of(account, events)


# --- operator commands ---


def _admin(uow: UnitOfWork, caller: Caller | None) -> None:
    """The caller, re-read: an admin role removed a minute ago no longer counts."""
    if caller is None:  # the CLI: whoever runs it holds the database credentials
        return
    user = uow.users.get(caller.user_id)
    session = uow.sessions.get(caller.session_id)
    if user is None or session is None or not session.active or not user.active:
        raise SessionRefused("the session has ended")
    if "admin" not in user.roles:
        raise Forbidden("an admin role is required")


def _target(uow: UnitOfWork, target: uuid.UUID | str, *, for_update: bool = True) -> User:
    if isinstance(target, uuid.UUID):
        user = uow.users.get(target, for_update=for_update)
    else:
        user = uow.users.by_email(normalize_email(target), for_update=for_update)
    if user is None:
        raise UnknownUser(str(target))
    return user


def deactivate(
    uow: UnitOfWork,
    target: uuid.UUID | str,
    *,
    reason: str | None = None,
    by: Caller | None = None,
    headers: dict[str, str] | None = None,
    clock: Clock = utc_now,
) -> Outcome:
    """Deactivate an account (by id or email): every session ends, login and refresh stop."""
    with uow:
        _admin(uow, by)
        user = _target(uow, target)
        if by is not None and user.id == by.user_id:
            raise Forbidden("an admin cannot deactivate their own account")
        user.deactivate(reason, clock(), uow.sessions.active_of(user.id))
        account = Account.of(user)
        events = uow.commit(headers)
    return Outcome.of(account, events)


def reactivate(
    uow: UnitOfWork,
    target: uuid.UUID | str,
    *,
    by: Caller | None = None,
    headers: dict[str, str] | None = None,
    clock: Clock = utc_now,
) -> Outcome:
    with uow:
        _admin(uow, by)
        user = _target(uow, target)
        user.reactivate(clock())
        account = Account.of(user)
        events = uow.commit(headers)
    return Outcome.of(account, events)
