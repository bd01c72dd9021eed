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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, func
from sqlalchemy.dialects.postgresql import insert

from event_contract import Event
from read_model import LoginHistoryEntry, UserView

users = UserView.__table__
login_history = LoginHistoryEntry.__table__


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


def fold_user_registered(change: UserChange, event: Event) -> dict[str, Any] | None:
    change.registered_at = event.time
    change.set_roles(event.data["roles"], event.sequence)
    return None


def fold_user_logged_in(change: UserChange, event: Event) -> dict[str, Any] | None:
    # A login may come before its registration: the row is created now, completed later.
    change.login_count += 1
    change.last_login_at = _later(change.last_login_at, event.time)
    return _history_row(event, "success")


def fold_user_login_failed(change: UserChange, event: Event) -> dict[str, Any] | None:
    change.failed_login_count += 1
    change.last_failed_login_at = _later(change.last_failed_login_at, event.time)
    return _history_row(event, "failure")


def fold_user_role_changed(change: UserChange, event: Event) -> dict[str, Any] | None:
    change.set_roles(event.data["roles"], event.sequence)
    return None


Fold = Callable[[UserChange, Event], "dict[str, Any] | None"]

HANDLERS: dict[str, Fold] = {
    "UserRegistered": fold_user_registered,
    "UserLoggedIn": fold_user_logged_in,
    "UserLoginFailed": fold_user_login_failed,
    "UserRoleGranted": fold_user_role_changed,
    "UserRoleRevoked": fold_user_role_changed,
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


def apply_events(conn: Connection, events: Iterable[Event]) -> None:
    """Apply events that were never applied before (the caller claimed their ids)."""
    changes: dict[uuid.UUID, UserChange] = {}
    history: list[dict[str, Any]] = []
    for event in events:
        change = changes.setdefault(event.user_id, UserChange(event.user_id))
        change.saw(event)
        row = HANDLERS[event.type](change, event)
        if row is not None:
            history.append(row)
    if changes:
        # Rows in id order: concurrent batches lock users in one order and cannot deadlock.
        conn.execute(UPSERT_USERS, [changes[key].row() for key in sorted(changes)])
    if history:
        conn.execute(INSERT_HISTORY, history)
