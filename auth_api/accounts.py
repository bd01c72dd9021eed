"""Write-side commands: register, log in, grant and revoke roles.

Each command changes the user row and appends its event to the outbox in one transaction.
Events of one user are ordered by taking the user's row lock before the outbox insert.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from auth_api.models import User
from auth_api.outbox import append_to_outbox
from event_contract import new_event


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
class LockoutPolicy:
    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    lock_for: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class CommandContext:
    """Who asked, for the audit fields of the event and the outbox headers."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None

    def headers(self) -> dict[str, str]:
        return {"request_id": self.request_id} if self.request_id else {}


@dataclass
class AccountService:
    session: Session
    hash_method: str = "scrypt"
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    # Called after each commit; the app wires it to "run the relay now".
    on_commit: Callable[[], None] = lambda: None
    _dummy_hash: str | None = None

    def register(self, email: str, password: str, ctx: CommandContext) -> tuple[User, uuid.UUID]:
        user = User(
            id=uuid.uuid4(),
            email=normalize_email(email),
            password_hash=generate_password_hash(password, method=self.hash_method),
            roles=["user"],
            version=1,
            failed_attempts=0,
        )
        event = new_event("UserRegistered", user.id, user.version, {"email": user.email, "roles": user.roles})
        self.session.add(user)
        try:
            self.session.flush()  # the users row first: a taken email fails before the outbox
        except IntegrityError as exc:
            self.session.rollback()
            raise EmailTaken(user.email) from exc
        append_to_outbox(self.session, event, ctx.headers())
        try:
            self.session.commit()
        except IntegrityError as exc:  # a concurrent registration of the same email won
            self.session.rollback()
            raise EmailTaken(user.email) from exc
        self.on_commit()
        return user, event.id

    def log_in(self, email: str, password: str, ctx: CommandContext) -> tuple[User, uuid.UUID]:
        """Return the user and the UserLoggedIn event id, or raise; failures are recorded."""
        user = self.session.execute(
            select(User).where(User.email == normalize_email(email)).with_for_update()
        ).scalar_one_or_none()
        if user is None:
            self.session.rollback()
            # Same work as a real check, so timing does not reveal which emails exist.
            check_password_hash(self._dummy(), password)
            raise InvalidCredentials()
        now = datetime.now(UTC)
        if user.locked_until is not None and user.locked_until > now:
            self._record_failure(user, ctx, "account_locked", count=False, now=now)
            raise AccountLocked(retry_after=_seconds_until(user.locked_until, now))
        if not check_password_hash(user.password_hash, password):
            locked = self._record_failure(user, ctx, "invalid_password", count=True, now=now)
            if locked:
                raise AccountLocked(retry_after=int(self.lockout.lock_for.total_seconds()))
            raise InvalidCredentials()
        user.failed_attempts = 0
        user.first_failed_at = None
        user.locked_until = None
        user.version += 1
        event = new_event(
            "UserLoggedIn",
            user.id,
            user.version,
            {"email": user.email, "ip": ctx.ip, "user_agent": ctx.user_agent},
        )
        append_to_outbox(self.session, event, ctx.headers())
        self.session.commit()
        self.on_commit()
        return user, event.id

    def _record_failure(
        self, user: User, ctx: CommandContext, reason: str, *, count: bool, now: datetime
    ) -> bool:
        """Write UserLoginFailed; return True if this failure locked the account."""
        locked = False
        if count:
            if user.first_failed_at is None or now - user.first_failed_at > self.lockout.window:
                user.first_failed_at = now
                user.failed_attempts = 0
            user.failed_attempts += 1
            if user.failed_attempts >= self.lockout.max_failures:
                user.locked_until = now + self.lockout.lock_for
                user.failed_attempts = 0
                user.first_failed_at = None
                locked = True
        user.version += 1
        event = new_event(
            "UserLoginFailed",
            user.id,
            user.version,
            {"email": user.email, "ip": ctx.ip, "user_agent": ctx.user_agent, "reason": reason},
        )
        append_to_outbox(self.session, event, ctx.headers())
        self.session.commit()
        self.on_commit()
        return locked

    def change_role(
        self, email: str, role: str, *, grant: bool, ctx: CommandContext
    ) -> tuple[User, uuid.UUID | None]:
        """Grant or revoke a role; returns no event id when nothing changed."""
        user = self.session.execute(
            select(User).where(User.email == normalize_email(email)).with_for_update()
        ).scalar_one_or_none()
        if user is None:
            self.session.rollback()
            raise UnknownUser(email)
        roles = set(user.roles)
        if (role in roles) == grant:
            self.session.rollback()
            return user, None
        roles = roles | {role} if grant else roles - {role}
        user.roles = sorted(roles)
        user.version += 1
        event = new_event(
            "UserRoleGranted" if grant else "UserRoleRevoked",
            user.id,
            user.version,
            {"role": role, "roles": user.roles},
        )
        append_to_outbox(self.session, event, ctx.headers())
        self.session.commit()
        self.on_commit()
        return user, event.id

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = generate_password_hash(uuid.uuid4().hex, method=self.hash_method)
        return self._dummy_hash


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, int((moment - now).total_seconds() + 0.999))
