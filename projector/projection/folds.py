"""The effects of user events on the read model, applied a whole batch at a time.

Each event type folds into a per-user change (``UserChange``); a batch then costs a few
statements whatever its size: one upsert of the changed users, one insert each of
login-history and timeline rows, one upsert of sessions. Every fold is commutative (sums,
greatest or least timestamps, inserts keyed by event id) or guarded by the aggregate
version (roles, email, status: the highest version wins), so batches may arrive in any
order and split any way and still converge.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, or_, tuple_, update
from sqlalchemy.dialects.postgresql import insert

from event_contract import Event
from read_model import LoginHistoryEntry, SessionView, TimelineEntry, UserView

users = UserView.__table__
login_history = LoginHistoryEntry.__table__
sessions = SessionView.__table__
timeline = TimelineEntry.__table__

ACTIVE, DEACTIVATED = "active", "deactivated"

# What each event shows in the account's timeline: an allow-list, so a field a producer adds
# later (or a secret such as EmailChangeRequested's ``code``) never reaches the read model.
TIMELINE_FIELDS: dict[str, tuple[str, ...]] = {
    "UserRegistered": ("email", "roles"),
    "UserLoggedIn": ("session_id", "ip", "user_agent"),
    "UserLoginFailed": ("reason", "ip", "user_agent"),
    "UserRoleGranted": ("role", "roles"),
    "UserRoleRevoked": ("role", "roles"),
    "SessionStarted": ("session_id", "ip", "user_agent", "new_device"),
    "SessionRefreshed": ("session_id",),
    "SessionEnded": ("session_id", "reason"),
    "PasswordChanged": (),
    "EmailChangeRequested": ("new_email", "expires_at"),
    "EmailChanged": ("email", "previous_email"),
    "UserDeactivated": ("reason",),
    "UserReactivated": (),
    "UserDeleted": ("by",),  # never shown: erasing purges the account's timeline
}


@dataclass
class UserChange:
    """What a batch's events do to one user's row; merged into the stored row by the upsert."""

    id: uuid.UUID
    email: str | None = None
    email_version: int = 0
    status: str = ACTIVE
    status_version: int = 0
    password_changed_at: datetime | None = None
    registered_at: datetime | None = None
    roles: list[str] | None = None
    roles_version: int = 0
    login_count: int = 0
    failed_login_count: int = 0
    last_login_at: datetime | None = None
    last_failed_login_at: datetime | None = None
    version: int = 0
    deleted_at: datetime | None = None

    def saw(self, event: Event) -> None:
        self.version = max(self.version, event.sequence)

    def set_email(self, email: str, version: int) -> None:
        if version > self.email_version:
            self.email, self.email_version = email, version

    def set_status(self, status: str, version: int) -> None:
        if version > self.status_version:
            self.status, self.status_version = status, version

    def set_roles(self, roles: list[str], version: int) -> None:
        if version > self.roles_version:
            self.roles, self.roles_version = list(roles), version

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "email_version": self.email_version,
            "status": self.status,
            "status_version": self.status_version,
            "password_changed_at": self.password_changed_at,
            "registered_at": self.registered_at,
            "roles": self.roles if self.roles is not None else [],
            "roles_version": self.roles_version,
            "login_count": self.login_count,
            "failed_login_count": self.failed_login_count,
            "last_login_at": self.last_login_at,
            "last_failed_login_at": self.last_failed_login_at,
            "version": self.version,
            "deleted_at": self.deleted_at,
        }


def _later(current: datetime | None, moment: datetime) -> datetime:
    return moment if current is None or moment > current else current


def _earlier(current: datetime | None, moment: datetime) -> datetime:
    return moment if current is None or moment < current else current


def timeline_data(event: Event) -> dict[str, Any]:
    """The small data object the timeline keeps of an event (see ``TIMELINE_FIELDS``)."""
    return {name: event.data.get(name) for name in TIMELINE_FIELDS[event.type]}


def _timeline_row(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.id,
        "user_id": event.user_id,
        "sequence": event.sequence,
        "event_type": event.type,
        "occurred_at": event.time,
        "data": timeline_data(event),
    }


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
    """Everything a batch changes: user rows, login-history, timeline and session rows."""

    users: dict[uuid.UUID, UserChange] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
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
                "last_used_at": None,
                "new_device": None,
            },
        )

    def start_session(self, event: Event) -> None:
        """A session's start: from SessionStarted, or from a UserLoggedIn that names it."""
        session = self.session(event.data["session_id"], event.user_id)
        # Both events of one login carry the same device; the earliest time is the start.
        session["started_at"] = _earlier(session["started_at"], event.time)
        session["ip"] = session["ip"] or event.data.get("ip")
        session["user_agent"] = session["user_agent"] or event.data.get("user_agent")
        self.use_session(event)

    def use_session(self, event: Event) -> None:
        session = self.session(event.data["session_id"], event.user_id)
        session["last_used_at"] = _later(session["last_used_at"], event.time)


def fold_user_registered(batch: BatchFold, change: UserChange, event: Event) -> None:
    change.registered_at = event.time
    change.set_email(event.data["email"], event.sequence)
    change.set_roles(event.data["roles"], event.sequence)


def fold_user_logged_in(batch: BatchFold, change: UserChange, event: Event) -> None:
    # A login may come before its registration: the row is created now, completed later.
    change.login_count += 1
    change.last_login_at = _later(change.last_login_at, event.time)
    batch.history.append(_history_row(event, "success"))
    if event.data.get("session_id"):  # logins before sessions existed started none
        batch.start_session(event)


def fold_user_login_failed(batch: BatchFold, change: UserChange, event: Event) -> None:
    change.failed_login_count += 1
    change.last_failed_login_at = _later(change.last_failed_login_at, event.time)
    batch.history.append(_history_row(event, "failure"))


def fold_user_role_changed(batch: BatchFold, change: UserChange, event: Event) -> None:
    change.set_roles(event.data["roles"], event.sequence)


def fold_session_started(batch: BatchFold, change: UserChange, event: Event) -> None:
    batch.start_session(event)
    session = batch.sessions[uuid.UUID(event.data["session_id"])]
    if session["new_device"] is None:  # one SessionStarted per session (duplicates agree)
        session["new_device"] = event.data["new_device"]


def fold_session_refreshed(batch: BatchFold, change: UserChange, event: Event) -> None:
    batch.use_session(event)


def fold_session_ended(batch: BatchFold, change: UserChange, event: Event) -> None:
    # Its end may be applied before its start (the upsert merges). Should a session be ended
    # twice, the first end (by time, then reason) is kept, whatever the order of arrival.
    session = batch.session(event.data["session_id"], event.user_id)
    end = (event.time, event.data["reason"])
    if session["ended_at"] is None or end < (session["ended_at"], session["end_reason"]):
        session.update(ended_at=end[0], end_reason=end[1])


def fold_password_changed(batch: BatchFold, change: UserChange, event: Event) -> None:
    change.password_changed_at = _later(change.password_changed_at, event.time)


def fold_email_change_requested(batch: BatchFold, change: UserChange, event: Event) -> None:
    pass  # the timeline row is its only effect (without the code)


def fold_email_changed(batch: BatchFold, change: UserChange, event: Event) -> None:
    change.set_email(event.data["email"], event.sequence)


def fold_user_deactivated(batch: BatchFold, change: UserChange, event: Event) -> None:
    change.set_status(DEACTIVATED, event.sequence)


def fold_user_reactivated(batch: BatchFold, change: UserChange, event: Event) -> None:
    change.set_status(ACTIVE, event.sequence)


def fold_user_deleted(batch: BatchFold, change: UserChange, event: Event) -> None:
    # The upsert leaves a tombstone; ``purge_erased`` then removes everything else of the user.
    change.deleted_at = _earlier(change.deleted_at, event.time)


Fold = Callable[[BatchFold, UserChange, Event], None]

HANDLERS: dict[str, Fold] = {
    "UserRegistered": fold_user_registered,
    "UserLoggedIn": fold_user_logged_in,
    "UserLoginFailed": fold_user_login_failed,
    "UserRoleGranted": fold_user_role_changed,
    "UserRoleRevoked": fold_user_role_changed,
    "SessionStarted": fold_session_started,
    "SessionRefreshed": fold_session_refreshed,
    "SessionEnded": fold_session_ended,
    "PasswordChanged": fold_password_changed,
    "EmailChangeRequested": fold_email_change_requested,
    "EmailChanged": fold_email_changed,
    "UserDeactivated": fold_user_deactivated,
    "UserReactivated": fold_user_reactivated,
    "UserDeleted": fold_user_deleted,
}


def _upsert_users() -> Any:
    stmt = insert(users)
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[users.c.id],
        set_={
            "email": case((new.email_version > users.c.email_version, new.email), else_=users.c.email),
            "email_version": func.greatest(users.c.email_version, new.email_version),
            "status": case((new.status_version > users.c.status_version, new.status), else_=users.c.status),
            "status_version": func.greatest(users.c.status_version, new.status_version),
            "password_changed_at": func.greatest(users.c.password_changed_at, new.password_changed_at),
            "registered_at": func.coalesce(new.registered_at, users.c.registered_at),
            "roles": case((new.roles_version > users.c.roles_version, new.roles), else_=users.c.roles),
            "roles_version": func.greatest(users.c.roles_version, new.roles_version),
            "login_count": users.c.login_count + new.login_count,
            "failed_login_count": users.c.failed_login_count + new.failed_login_count,
            "last_login_at": func.greatest(users.c.last_login_at, new.last_login_at),
            "last_failed_login_at": func.greatest(users.c.last_failed_login_at, new.last_failed_login_at),
            "version": func.greatest(users.c.version, new.version),
            "deleted_at": func.least(users.c.deleted_at, new.deleted_at),
        },
    ).returning(users.c.id, users.c.deleted_at)


UPSERT_USERS = _upsert_users()

# What a tombstone keeps: its id, version and deletion time; everything else is blanked.
_BLANK = {
    "email": None,
    "email_version": 0,
    "status": ACTIVE,
    "status_version": 0,
    "password_changed_at": None,
    "registered_at": None,
    "roles": [],
    "roles_version": 0,
    "login_count": 0,
    "failed_login_count": 0,
    "last_login_at": None,
    "last_failed_login_at": None,
}


def purge_erased(conn: Connection, user_ids: list[uuid.UUID]) -> None:
    """Remove all the read model holds of erased users but their tombstone.

    Runs in every batch that touched an erased user, after its upsert: the upsert took the
    user's row lock, so whichever of two concurrent batches commits second sees the tombstone
    and removes what the other added.
    """
    if not user_ids:
        return
    for table in (login_history, sessions, timeline):
        conn.execute(delete(table).where(table.c.user_id.in_(user_ids)))
    conn.execute(update(users).where(users.c.id.in_(user_ids)).values(**_BLANK))
INSERT_HISTORY = insert(login_history).on_conflict_do_nothing(index_elements=[login_history.c.event_id])
INSERT_TIMELINE = insert(timeline).on_conflict_do_nothing(index_elements=[timeline.c.event_id])


def _earlier_end(new: Any) -> Any:
    old = sessions.c
    sooner = tuple_(new.ended_at, new.end_reason) < tuple_(old.ended_at, old.end_reason)
    return and_(new.ended_at.is_not(None), or_(old.ended_at.is_(None), sooner))


def _upsert_sessions() -> Any:
    stmt = insert(sessions)
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[sessions.c.session_id],
        set_={
            # LEAST and GREATEST skip NULLs: a row that lacks a time keeps the other's.
            "started_at": func.least(sessions.c.started_at, new.started_at),
            "ip": func.coalesce(sessions.c.ip, new.ip),
            "user_agent": func.coalesce(sessions.c.user_agent, new.user_agent),
            "new_device": func.coalesce(sessions.c.new_device, new.new_device),  # SessionStarted's
            "last_used_at": func.greatest(sessions.c.last_used_at, new.last_used_at),
            # The first end is kept (see fold_session_ended); both columns read the old row.
            "ended_at": func.least(sessions.c.ended_at, new.ended_at),
            "end_reason": case((_earlier_end(new), new.end_reason), else_=sessions.c.end_reason),
        },
    )


UPSERT_SESSIONS = _upsert_sessions()


def fold_events(events: Iterable[Event]) -> BatchFold:
    """What the events do to the read model, per row (pure: no database)."""
    batch = BatchFold()
    for event in events:
        if event.forgotten:  # an erased user's: nothing personal is left to project
            continue
        change = batch.users.setdefault(event.user_id, UserChange(event.user_id))
        change.saw(event)
        HANDLERS[event.type](batch, change, event)
        batch.timeline.append(_timeline_row(event))
    return batch


def apply_events(conn: Connection, events: Iterable[Event]) -> None:
    """Apply events that were never applied before (the caller claimed their ids)."""
    batch = fold_events(events)
    # Rows in key order: concurrent batches lock rows in one order and cannot deadlock.
    erased: list[uuid.UUID] = []
    if batch.users:
        rows = conn.execute(UPSERT_USERS, [batch.users[key].row() for key in sorted(batch.users)])
        erased = [row.id for row in rows if row.deleted_at is not None]
    if batch.history:
        conn.execute(INSERT_HISTORY, batch.history)
    if batch.timeline:
        conn.execute(INSERT_TIMELINE, batch.timeline)
    if batch.sessions:
        conn.execute(UPSERT_SESSIONS, [batch.sessions[key] for key in sorted(batch.sessions)])
    purge_erased(conn, erased)
