"""The effects of user events on the read model, applied a whole batch at a time.

Each event type folds into a per-user change (``UserChange``); a batch then costs two
statements whatever its size: one upsert of the changed users, one insert of login-history
rows. Every fold is commutative (sums, greatest timestamps) or guarded by the aggregate
version (roles: the highest version wins), so batches may arrive in any order and split
any way and still converge.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, func
from sqlalchemy.dialects.postgresql import insert

from event_contract import Event
from read_model import LoginHistoryEntry, SessionView, UserView

users = UserView.__table__
login_history = LoginHistoryEntry.__table__
sessions = SessionView.__table__


@dataclass
class UserChange:
    """What a batch's events do to one user's row; merged into the stored row by the upsert."""

    id: uuid.UUID
    email: str | None = None
    registered_at: datetime | None = None
    roles: list[str] | None = None
    roles_version: int = 0
    login_count: int = 0
    failed_login_count: int = 0
    last_login_at: datetime | None = None
    last_failed_login_at: datetime | None = None
    version: int = 0

    def saw(self, event: Event) -> None:
        self.version = max(self.version, event.sequence)
        self.email = self.email or event.data.get("email")

    def set_roles(self, roles: list[str], version: int) -> None:
        if version > self.roles_version:
            self.roles, self.roles_version = list(roles), version

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "registered_at": self.registered_at,
            "roles": self.roles if self.roles is not None else [],
            "roles_version": self.roles_version,
            "login_count": self.login_count,
            "failed_login_count": self.failed_login_count,
            "last_login_at": self.last_login_at,
            "last_failed_login_at": self.last_failed_login_at,
            "version": self.version,
        }


def _later(current: datetime | None, moment: datetime) -> datetime:
    return moment if current is None or moment > current else current


def _history_row(event: Event, outcome: str) -> dict[str, Any]:
    return {
        "event_id": event.id,
        "user_id": event.user_id,
        "email": event.data["email"],
        "outcome": outcome,
        "reason": event.data.get("reason"),
        "ip": event.data.get("ip"),
        "user_agent": event.data.get("user_agent"),
        "occurred_at": event.time,
    }


@dataclass
class BatchFold:
    """Everything a batch changes: user rows, login-history rows, session rows."""

    users: dict[uuid.UUID, UserChange] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    sessions: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)

    def session(self, session_id: str, user_id: uuid.UUID) -> dict[str, Any]:
        key = uuid.UUID(session_id)
        return self.sessions.setdefault(
            key,
            {
                "session_id": key,
                "user_id": user_id,
                "started_at": None,
                "ip": None,
                "user_agent": None,
                "ended_at": None,
                "end_reason": None,
            },
        )


def fold_user_registered(batch: BatchFold, change: UserChange, event: Event) -> None:
    change.registered_at = event.time
    change.set_roles(event.data["roles"], event.sequence)


def fold_user_logged_in(batch: BatchFold, change: UserChange, event: Event) -> None:
    # A login may come before its registration: the row is created now, completed later.
    change.login_count += 1
    change.last_login_at = _later(change.last_login_at, event.time)
    batch.history.append(_history_row(event, "success"))
    if event.data.get("session_id"):  # logins before sessions existed started none
        session = batch.session(event.data["session_id"], event.user_id)
        session.update(started_at=event.time, ip=event.data.get("ip"))
        session.update(user_agent=event.data.get("user_agent"))


def fold_user_login_failed(batch: BatchFold, change: UserChange, event: Event) -> None:
    change.failed_login_count += 1
    change.last_failed_login_at = _later(change.last_failed_login_at, event.time)
    batch.history.append(_history_row(event, "failure"))


def fold_user_role_changed(batch: BatchFold, change: UserChange, event: Event) -> None:
    change.set_roles(event.data["roles"], event.sequence)


def fold_session_ended(batch: BatchFold, change: UserChange, event: Event) -> None:
    # A session ends once; its end may be applied before its start (the upsert merges).
    batch.session(event.data["session_id"], event.user_id).update(
        ended_at=event.time, end_reason=event.data["reason"]
    )


Fold = Callable[[BatchFold, UserChange, Event], None]

HANDLERS: dict[str, Fold] = {
    "UserRegistered": fold_user_registered,
    "UserLoggedIn": fold_user_logged_in,
    "UserLoginFailed": fold_user_login_failed,
    "UserRoleGranted": fold_user_role_changed,
    "UserRoleRevoked": fold_user_role_changed,
    "SessionEnded": fold_session_ended,
}


def _upsert_users() -> Any:
    stmt = insert(users)
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[users.c.id],
        set_={
            "email": func.coalesce(users.c.email, new.email),
            "registered_at": func.coalesce(new.registered_at, users.c.registered_at),
            "roles": case((new.roles_version > users.c.roles_version, new.roles), else_=users.c.roles),
            "roles_version": func.greatest(users.c.roles_version, new.roles_version),
            "login_count": users.c.login_count + new.login_count,
            "failed_login_count": users.c.failed_login_count + new.failed_login_count,
            "last_login_at": func.greatest(users.c.last_login_at, new.last_login_at),
            "last_failed_login_at": func.greatest(users.c.last_failed_login_at, new.last_failed_login_at),
            "version": func.greatest(users.c.version, new.version),
        },
    )


UPSERT_USERS = _upsert_users()
INSERT_HISTORY = insert(login_history).on_conflict_do_nothing(index_elements=[login_history.c.event_id])


def _upsert_sessions() -> Any:
    stmt = insert(sessions)
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[sessions.c.session_id],
        set_={
            "started_at": func.coalesce(sessions.c.started_at, new.started_at),
            "ip": func.coalesce(sessions.c.ip, new.ip),
            "user_agent": func.coalesce(sessions.c.user_agent, new.user_agent),
            "ended_at": func.greatest(sessions.c.ended_at, new.ended_at),
            "end_reason": func.coalesce(sessions.c.end_reason, new.end_reason),
        },
    )


UPSERT_SESSIONS = _upsert_sessions()


def fold_events(events: Iterable[Event]) -> BatchFold:
    """What the events do to the read model, per row (pure: no database)."""
    batch = BatchFold()
    for event in events:
        change = batch.users.setdefault(event.user_id, UserChange(event.user_id))
        change.saw(event)
        HANDLERS[event.type](batch, change, event)
    return batch


def apply_events(conn: Connection, events: Iterable[Event]) -> None:
    """Apply events that were never applied before (the caller claimed their ids)."""
    batch = fold_events(events)
    # Rows in key order: concurrent batches lock rows in one order and cannot deadlock.
    if batch.users:
        conn.execute(UPSERT_USERS, [batch.users[key].row() for key in sorted(batch.users)])
    if batch.history:
        conn.execute(INSERT_HISTORY, batch.history)
    if batch.sessions:
        conn.execute(UPSERT_SESSIONS, [batch.sessions[key] for key in sorted(batch.sessions)])
