"""An account as it was at a past time, folded from its timeline rows (``as_of``).

The same rules as the live projection (``projector.projection.folds``), applied to the
events up to a moment instead of all of them: the email, roles and status of the highest
version that set them, the latest login and password change, counts of logins. Over the
whole timeline it gives the live row (the convergence test checks that it does).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class TimelineRow(Protocol):
    event_type: str
    sequence: int
    occurred_at: datetime
    data: dict[str, Any]


@dataclass
class AccountState:
    """The fields of ``read_model.users`` that a timeline determines."""

    id: uuid.UUID
    email: str | None = None
    status: str = "active"
    roles: list[str] = field(default_factory=list)
    registered_at: datetime | None = None
    last_login_at: datetime | None = None
    last_failed_login_at: datetime | None = None
    password_changed_at: datetime | None = None
    login_count: int = 0
    failed_login_count: int = 0
    version: int = 0


def _later(current: datetime | None, moment: datetime) -> datetime:
    return moment if current is None or moment > current else current


def account_from_timeline(user_id: uuid.UUID, entries: Iterable[TimelineRow]) -> AccountState | None:
    """The account the entries make, or None if they hold no registration."""
    account = AccountState(user_id)
    # In version order, a later setter simply overwrites an earlier one ("highest version wins").
    for entry in sorted(entries, key=lambda e: e.sequence):
        kind, data = entry.event_type, entry.data
        account.version = max(account.version, entry.sequence)
        if kind == "UserRegistered":
            account.registered_at = entry.occurred_at
            account.email, account.roles = data["email"], list(data["roles"])
        elif kind == "EmailChanged":
            account.email = data["email"]
        elif kind in ("UserRoleGranted", "UserRoleRevoked"):
            account.roles = list(data["roles"])
        elif kind == "UserDeactivated":
            account.status = "deactivated"
        elif kind == "UserReactivated":
            account.status = "active"
        elif kind == "PasswordChanged":
            account.password_changed_at = _later(account.password_changed_at, entry.occurred_at)
        elif kind == "UserLoggedIn":
            account.login_count += 1
            account.last_login_at = _later(account.last_login_at, entry.occurred_at)
        elif kind == "UserLoginFailed":
            account.failed_login_count += 1
            account.last_failed_login_at = _later(account.last_failed_login_at, entry.occurred_at)
    return account if account.registered_at is not None else None
