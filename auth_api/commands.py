"""Commands of the write side: register, log in, grant and revoke roles.

Each is a plain function over a unit of work, so routes, CLI commands and tests call the
same code. Passwords are hashed and verified outside any transaction: no row lock (and no
database connection) is held while a hash is computed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError

from auth_api.emails import normalize_email
from auth_api.lockout import FailureCount, LockoutPolicy, failure_key
from auth_api.models import Device, User, UserSession
from auth_api.passwords import PasswordHasher
from auth_api.unit_of_work import UnitOfWork

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
    event_id: uuid.UUID | None  # None when the command changed nothing
    session: SessionGrant | None = None
    sequence: int | None = None  # the user's version after the command

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
        session = UserSession.start(user.id, now)
        uow.sessions.add(session)
        event = user.log_in(device, now, session, upgraded)
        account = Account.of(user)
        grant = SessionGrant(session.id, session.refresh_jti)
        uow.commit(headers)
    return Outcome(account, event.id, grant, event.sequence)


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
        grant = SessionGrant(session.id, session.rotate(now))
        account = Account.of(user)
        uow.commit(headers)
    return Outcome(account, None, grant)


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


