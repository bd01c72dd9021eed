"""The unit of work of the write side: state and outbox rows commit together, then the relay is kicked.

A command opens a unit of work, loads or adds ``User`` aggregates through ``uow.users``,
calls their methods (which record events), and calls ``commit()``. Commit stages every
recorded event as an outbox row in the transaction of the state change, commits, and only
then runs ``after_commit`` (the relay kick). Leaving the block without commit rolls back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self

from sqlalchemy import delete, insert, select, text
from sqlalchemy.orm import Session

from auth_api.lockout import FailureCount
from auth_api.models import DataKeyRow, EmailChange, LoginFailures, OutboxMessage, User, UserSession
from event_contract import Event, serialize_event
from event_contract.crypto import DataKey, MasterKeys, new_data_key, personal_fields


class Users(Protocol):
    """The users the unit of work tracks; what a command loads, it may change."""

    def get(self, user_id: uuid.UUID, *, for_update: bool = False) -> User | None: ...
    def by_email(self, email: str, *, for_update: bool = False) -> User | None: ...
    def add(self, user: User) -> None: ...

    def remove(self, user: User) -> None:
        """Delete the account's rows (sessions, pending email change, the user) at commit;
        its recorded events are still staged in the outbox."""
        ...


class Sessions(Protocol):
    def get(self, session_id: uuid.UUID, *, for_update: bool = False) -> UserSession | None: ...
    def add(self, session: UserSession) -> None: ...

    def active_of(self, user_id: uuid.UUID) -> list[UserSession]:
        """The user's sessions that have not ended, locked (the caller holds the user's lock)."""
        ...

    def known_device(self, user_id: uuid.UUID, device_key: bytes) -> bool:
        """Whether any session of the user, ended or not, came from this device."""
        ...


class UserKeys(Protocol):
    """The users' data keys (``event_contract.crypto``)."""

    def create(self, user_id: uuid.UUID) -> DataKey: ...
    def of(self, user_id: uuid.UUID) -> DataKey | None: ...
    def destroy(self, user_id: uuid.UUID) -> None: ...


class EmailChanges(Protocol):
    """Pending email changes, one per user."""

    def get(self, user_id: uuid.UUID) -> EmailChange | None: ...
    def put(self, change: EmailChange) -> None: ...
    def remove(self, change: EmailChange) -> None: ...


class FailureCounters(Protocol):
    """Failed-login counters per email key (``auth_api.lockout.failure_key``)."""

    def lock(self, key: bytes) -> FailureCount:
        """The counter of ``key``, locked until the end of the transaction (zero if none)."""
        ...

    def save(self, key: bytes, count: FailureCount) -> None: ...


class UnitOfWork(Protocol):
    users: Users
    sessions: Sessions
    email_changes: EmailChanges
    keys: UserKeys
    failures: FailureCounters

    def __enter__(self) -> Self: ...
    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    def commit(self, headers: dict[str, str] | None = None) -> list[Event]: ...
    def rollback(self) -> None: ...


class SqlUsers:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.seen: dict[uuid.UUID, User] = {}

    def get(self, user_id: uuid.UUID, *, for_update: bool = False) -> User | None:
        query = select(User).where(User.id == user_id)
        return self._one(query.with_for_update() if for_update else query)

    def by_email(self, email: str, *, for_update: bool = False) -> User | None:
        query = select(User).where(User.email == email)
        return self._one(query.with_for_update() if for_update else query)

    def add(self, user: User) -> None:
        self.session.add(user)
        self.seen[user.id] = user

    def remove(self, user: User) -> None:
        self.session.flush()  # the sessions just ended, before their rows go
        for table in (UserSession, EmailChange):
            self.session.execute(delete(table).where(table.user_id == user.id))
        self.session.delete(user)

    def _one(self, query: object) -> User | None:
        # populate_existing: a row locked FOR UPDATE must be the row as it is now, not a
        # copy the session kept from an earlier read in this request.
        user = self.session.execute(
            query.execution_options(populate_existing=True)  # type: ignore[attr-defined]
        ).scalar_one_or_none()
        if user is not None:
            self.seen[user.id] = user
        return user


class SqlSessions:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, session_id: uuid.UUID, *, for_update: bool = False) -> UserSession | None:
        query = select(UserSession).where(UserSession.id == session_id)
        if for_update:
            query = query.with_for_update()
        return self.session.execute(query.execution_options(populate_existing=True)).scalar_one_or_none()

    def add(self, user_session: UserSession) -> None:
        self.session.add(user_session)

    def active_of(self, user_id: uuid.UUID) -> list[UserSession]:
        query = (
            select(UserSession)
            .where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
            .order_by(UserSession.id)  # one lock order
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return list(self.session.execute(query).scalars())

    def known_device(self, user_id: uuid.UUID, device_key: bytes) -> bool:
        query = select(UserSession.id).where(
            UserSession.user_id == user_id, UserSession.device_key == device_key
        )
        return self.session.execute(query.limit(1)).first() is not None


class SqlEmailChanges:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, user_id: uuid.UUID) -> EmailChange | None:
        # Read under the user's row lock, which every command on the user takes first.
        query = select(EmailChange).where(EmailChange.user_id == user_id)
        return self.session.execute(query.execution_options(populate_existing=True)).scalar_one_or_none()

    def put(self, change: EmailChange) -> None:
        self.session.merge(change)

    def remove(self, change: EmailChange) -> None:
        self.session.delete(change)


class SqlUserKeys:
    def __init__(self, session: Session, master: MasterKeys) -> None:
        self.session = session
        self.master = master
        self.clear: dict[uuid.UUID, DataKey] = {}  # this unit of work's keys, unwrapped once

    def create(self, user_id: uuid.UUID) -> DataKey:
        key = new_data_key()
        master_id, wrapped = self.master.wrap(user_id, key)
        self.session.add(
            DataKeyRow(user_id=user_id, key_id=key.key_id, master_key_id=master_id, wrapped=wrapped)
        )
        self.clear[user_id] = key
        return key

    def of(self, user_id: uuid.UUID) -> DataKey | None:
        if user_id not in self.clear:
            row = self.session.get(DataKeyRow, user_id)
            if row is None:
                return None
            secret = self.master.unwrap(user_id, row.key_id, row.master_key_id, row.wrapped)
            self.clear[user_id] = DataKey(row.key_id, secret)
        return self.clear[user_id]

    def destroy(self, user_id: uuid.UUID) -> None:
        self.session.execute(delete(DataKeyRow).where(DataKeyRow.user_id == user_id))
        self.clear.pop(user_id, None)


_FAILURES_ROW = text(
    f"INSERT INTO {LoginFailures.__tablename__} (email_key) VALUES (:email_key) ON CONFLICT DO NOTHING"
)


class SqlFailureCounters:
    def __init__(self, session: Session) -> None:
        self.session = session

    def lock(self, key: bytes) -> FailureCount:
        # Insert-if-missing first, so that two first failures of one email serialise on the
        # row lock instead of both reading "no row" and one count being lost.
        self.session.execute(_FAILURES_ROW, {"email_key": key})
        row = self.session.execute(
            select(LoginFailures)
            .where(LoginFailures.email_key == key)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one()
        return row.count

    def save(self, key: bytes, count: FailureCount) -> None:
        row = self.session.get(LoginFailures, key)
        if count == FailureCount():  # nothing to remember: no row, nothing kept about the email
            if row is not None:
                self.session.delete(row)
            return
        if row is None:
            row = LoginFailures(email_key=key)
            self.session.add(row)
        row.count = count


class SqlUnitOfWork:
    def __init__(
        self, session: Session, master: MasterKeys, after_commit: Callable[[], None] = lambda: None
    ) -> None:
        self.session = session
        self.master = master
        self.after_commit = after_commit

    def __enter__(self) -> Self:
        self.users = SqlUsers(self.session)
        self.sessions = SqlSessions(self.session)
        self.email_changes = SqlEmailChanges(self.session)
        self.keys = SqlUserKeys(self.session, self.master)
        self.failures = SqlFailureCounters(self.session)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.rollback()  # after a commit there is nothing left to roll back

    def commit(self, headers: dict[str, str] | None = None) -> list[Event]:
        """Commit the tracked users with their events in the outbox; return the events."""
        events = [event for user in self.users.seen.values() for event in user.events]
        rows = [
            {
                "event_id": event.id,
                "user_id": event.user_id,
                "event_type": event.type,
                "payload": serialize_event(event, self._key(event)),  # may add the user's new key
                "headers": headers or {},
            }
            for event in events
        ]
        self.session.flush()  # the state (a unique email refused here), new data keys
        if rows:
            # One multi-row INSERT, in event order (the relay publishes by id): outbox rows are
            # never read back here, so the ORM's unit of work for them was pure overhead.
            self.session.execute(insert(OutboxMessage.__table__), rows)
        self.session.commit()
        for user in self.users.seen.values():
            user.events.clear()
        if events:
            self.after_commit()
        return events

    def _key(self, event: Event) -> DataKey | None:
        """The user's data key, made on first need (a new user, or one from before encryption):
        no personal field is ever stored in clear."""
        if not personal_fields(event.type):
            return None
        if event.type == "UserRegistered":
            # A new user id has no key: make one without asking the database first (a round
            # trip, and an early flush of the user row, on every registration).
            return self.keys.clear.get(event.user_id) or self.keys.create(event.user_id)
        return self.keys.of(event.user_id) or self.keys.create(event.user_id)

    def rollback(self) -> None:
        self.session.rollback()
        for user in self.users.seen.values():
            user.events.clear()
