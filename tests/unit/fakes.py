"""Fakes for the write side's unit of work: users in a dict, an in-memory outbox."""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Self

from auth_api.lockout import FailureCount
from auth_api.models import EmailChange, User, UserSession
from event_contract import Event
from event_contract.crypto import DataKey, new_data_key, personal_fields


class FakeUsers:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, User] = {}
        self.seen: dict[uuid.UUID, User] = {}
        self.locked: list[uuid.UUID] = []  # ids loaded FOR UPDATE, in order
        self.removed: list[uuid.UUID] = []  # ids removed in the current unit of work

    def get(self, user_id: uuid.UUID, *, for_update: bool = False) -> User | None:
        return self._seen(self.rows.get(user_id), for_update)

    def by_email(self, email: str, *, for_update: bool = False) -> User | None:
        found = next((u for u in self.rows.values() if u.email == email), None)
        return self._seen(found, for_update)

    def add(self, user: User) -> None:
        self.seen[user.id] = user

    def remove(self, user: User) -> None:
        self.removed.append(user.id)

    def _seen(self, user: User | None, for_update: bool) -> User | None:
        if user is not None:
            self.seen[user.id] = user
            if for_update:
                self.locked.append(user.id)
        return user


class FakeSessions:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, UserSession] = {}
        self.added: list[UserSession] = []

    def get(self, session_id: uuid.UUID, *, for_update: bool = False) -> UserSession | None:
        return self.rows.get(session_id)

    def add(self, session: UserSession) -> None:
        self.added.append(session)

    def active_of(self, user_id: uuid.UUID) -> list[UserSession]:
        return sorted(
            (s for s in self.rows.values() if s.user_id == user_id and s.active), key=lambda s: s.id
        )

    def known_device(self, user_id: uuid.UUID, device_key: bytes) -> bool:
        return any(s.user_id == user_id and s.device_key == device_key for s in self.rows.values())


class FakeUserKeys:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, DataKey] = {}

    def create(self, user_id: uuid.UUID) -> DataKey:
        self.rows[user_id] = new_data_key()
        return self.rows[user_id]

    def of(self, user_id: uuid.UUID) -> DataKey | None:
        return self.rows.get(user_id)

    def destroy(self, user_id: uuid.UUID) -> None:
        self.rows.pop(user_id, None)


class FakeEmailChanges:
    """Pending changes by user; like rows, changes to a loaded one count only once committed."""

    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, EmailChange] = {}
        self.staged: dict[uuid.UUID, EmailChange | None] = {}

    def get(self, user_id: uuid.UUID) -> EmailChange | None:
        if user_id in self.staged:
            return self.staged[user_id]
        row = self.rows.get(user_id)
        if row is None:
            return None
        copy = EmailChange(
            user_id=row.user_id,
            new_email=row.new_email,
            code_hash=row.code_hash,
            expires_at=row.expires_at,
            attempts=row.attempts,
        )
        self.staged[user_id] = copy
        return copy

    def put(self, change: EmailChange) -> None:
        self.staged[change.user_id] = change

    def remove(self, change: EmailChange) -> None:
        self.staged[change.user_id] = None

    def commit(self) -> None:
        for user_id, change in self.staged.items():
            if change is None:
                self.rows.pop(user_id, None)
            else:
                self.rows[user_id] = change
        self.staged = {}


class FakeFailureCounters:
    """Failure counters per email key; like the table, a zero counter is no row at all."""

    def __init__(self) -> None:
        self.rows: dict[bytes, FailureCount] = {}
        self.staged: dict[bytes, FailureCount] = {}
        self.locked: list[bytes] = []

    def lock(self, key: bytes) -> FailureCount:
        self.locked.append(key)
        return self.staged.get(key, self.rows.get(key, FailureCount()))

    def save(self, key: bytes, count: FailureCount) -> None:
        self.staged[key] = count

    def commit(self) -> None:
        for key, count in self.staged.items():
            if count == FailureCount():
                self.rows.pop(key, None)
            else:
                self.rows[key] = count
        self.staged = {}


class FakeUnitOfWork:
    """Commits by moving added users into ``users.rows`` and events into ``outbox``.

    Like the real one, a unique email is enforced at commit, and ``kicks`` counts the
    after-commit calls (one per commit that had events).
    """

    def __init__(self) -> None:
        self.users = FakeUsers()
        self.sessions = FakeSessions()
        self.email_changes = FakeEmailChanges()
        self.keys = FakeUserKeys()
        self.failures = FakeFailureCounters()
        self.outbox: list[tuple[Event, dict[str, str]]] = []
        self.commits = 0
        self.kicks = 0

    def __enter__(self) -> Self:
        self.users.seen = {}
        self.users.removed = []
        self.sessions.added = []
        self.email_changes.staged = {}
        self.failures.staged = {}
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.rollback()

    def commit(self, headers: dict[str, str] | None = None) -> list[Event]:
        from sqlalchemy.exc import IntegrityError

        for user in self.users.seen.values():
            twin = next(
                (u for u in self.users.rows.values() if u.email == user.email and u.id != user.id), None
            )
            if twin is not None:
                raise IntegrityError("INSERT INTO users", {}, Exception("duplicate email"))
        events = [event for user in self.users.seen.values() for event in user.events]
        for user in self.users.seen.values():
            self.users.rows[user.id] = user
            user.events.clear()
        for user_id in self.users.removed:
            self.users.rows.pop(user_id, None)
            self.email_changes.rows.pop(user_id, None)
            for session_id in [k for k, s in self.sessions.rows.items() if s.user_id == user_id]:
                del self.sessions.rows[session_id]
        self.sessions.rows.update((session.id, session) for session in self.sessions.added)
        for event in events:  # as the real one: a data key exists for whoever has personal data
            if personal_fields(event.type) and self.keys.of(event.user_id) is None:
                self.keys.create(event.user_id)
        self.outbox.extend((event, dict(headers or {})) for event in events)
        self.failures.commit()
        self.email_changes.commit()
        self.commits += 1
        if events:
            self.kicks += 1
        return events

    def rollback(self) -> None:
        self.failures.staged = {}
        self.email_changes.staged = {}
        self.users.removed = []
        for user in self.users.seen.values():
            user.events.clear()

    def events(self, user_id: uuid.UUID | None = None) -> list[Event]:
        return [e for e, _ in self.outbox if user_id is None or e.user_id == user_id]
