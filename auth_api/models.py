"""The write model (``auth_db``): the ``User`` aggregate and the transactional outbox.

A ``User`` changes only through its methods, and each change records its event with the
next aggregate version; the unit of work stages those events in the outbox in the same
transaction as the row (``auth_api.unit_of_work``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary, Text, func, orm, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from auth_api.extensions import db
from auth_api.lockout import FailureCount
from event_contract import Event, new_event


@dataclass(frozen=True)
class Device:
    """Where a command came from: recorded in login events, never logged."""

    ip: str | None = None
    user_agent: str | None = None


ACTIVE = "active"
DEACTIVATED = "deactivated"


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    # Stored normalized (``auth_api.emails``), so the unique index is case-insensitive.
    email: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)
    roles: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    # Aggregate version: bumped by every event, under the row lock.
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    failed_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    first_failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # "active" or "deactivated": a deactivated account can neither log in nor refresh.
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=ACTIVE)
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.events: list[Event] = []

    @orm.reconstructor
    def _loaded(self) -> None:
        self.events = []  # SQLAlchemy does not call __init__ for rows it loads

    @classmethod
    def register(cls, email: str, password_hash: str, now: datetime) -> User:
        user = cls(
            id=uuid.uuid4(),
            email=email,
            password_hash=password_hash,
            roles=["user"],
            version=0,
            failed_attempts=0,
            status=ACTIVE,
        )
        user._record("UserRegistered", {"email": email, "roles": list(user.roles)}, now)
        return user

    # --- login ---

    @property
    def failure_count(self) -> FailureCount:
        return FailureCount(self.failed_attempts or 0, self.first_failed_at, self.locked_until)

    @property
    def active(self) -> bool:
        return self.status != DEACTIVATED

    def log_in(
        self,
        device: Device,
        now: datetime,
        session: UserSession,
        *,
        new_device: bool,
        new_password_hash: str | None = None,
    ) -> Event:
        """A successful login: the failure count resets and ``session`` starts (UserLoggedIn,
        returned, then SessionStarted)."""
        self._set_failures(FailureCount())
        if new_password_hash is not None:  # a hash of an older scheme, upgraded on success
            self.password_hash = new_password_hash
        data = {
            "email": self.email,
            "ip": device.ip,
            "user_agent": device.user_agent,
            "session_id": session.id,
        }
        logged_in = self._record("UserLoggedIn", data, now)
        self._record("SessionStarted", {**data, "new_device": new_device}, now)
        return logged_in

    def refresh_session(self, session: UserSession, now: datetime) -> tuple[uuid.UUID, Event]:
        """Rotate ``session``'s refresh token: the new token id and the SessionRefreshed event."""
        jti = session.rotate(now)
        return jti, self._record("SessionRefreshed", {"session_id": session.id}, now)

    def end_session(self, session: UserSession, reason: str, now: datetime) -> Event | None:
        """End ``session`` (its refresh tokens stop working); None if it had ended already."""
        if session.ended_at is not None:
            return None
        session.ended_at, session.end_reason = now, reason
        return self._record("SessionEnded", {"session_id": session.id, "reason": reason}, now)

    def end_sessions(self, sessions: Iterable[UserSession], reason: str, now: datetime) -> list[Event]:
        return [e for s in sessions if (e := self.end_session(s, reason, now)) is not None]

    # --- password and email ---

    def change_password(
        self, password_hash: str, now: datetime, others: Iterable[UserSession]
    ) -> Event:
        """Set a new password; every other session ends (a thief's included)."""
        self.password_hash = password_hash
        self.password_changed_at = now
        self._set_failures(FailureCount())
        event = self._record("PasswordChanged", {"email": self.email}, now)
        self.end_sessions(others, "password-change", now)
        return event

    def request_email_change(self, new_email: str, code: str, expires_at: datetime, now: datetime) -> Event:
        data = {"new_email": new_email, "code": code, "expires_at": expires_at}
        return self._record("EmailChangeRequested", data, now)

    def change_email(self, new_email: str, now: datetime) -> Event:
        previous, self.email = self.email, new_email
        return self._record("EmailChanged", {"email": new_email, "previous_email": previous}, now)

    # --- erasure ---

    def erase(self, by: str, now: datetime, sessions: Iterable[UserSession]) -> Event:
        """Every session ends, then UserDeleted: the unit of work then removes the account and
        destroys its data key, which makes every earlier event of it unreadable."""
        self.end_sessions(sessions, "deletion", now)
        return self._record("UserDeleted", {"by": by}, now)

    # --- deactivation ---

    def deactivate(self, reason: str | None, now: datetime, sessions: Iterable[UserSession]) -> Event | None:
        """Deactivate and end every session; None (no event) if already deactivated."""
        if not self.active:
            return None
        self.status = DEACTIVATED
        event = self._record("UserDeactivated", {"reason": reason}, now)
        self.end_sessions(sessions, "deactivation", now)
        return event

    def reactivate(self, now: datetime) -> Event | None:
        if self.active:
            return None
        self.status = ACTIVE
        return self._record("UserReactivated", {}, now)

    def fail_login(
        self, device: Device, reason: str, now: datetime, count: FailureCount | None = None
    ) -> None:
        """Record a failed login; ``count`` is the email's counter after it (``login_failures``),
        mirrored on the account so that its lock is visible with the user."""
        if count is not None:
            self._set_failures(count)
        data = {"email": self.email, "ip": device.ip, "user_agent": device.user_agent, "reason": reason}
        self._record("UserLoginFailed", data, now)

    # --- roles ---

    def change_role(self, role: str, *, grant: bool, now: datetime) -> Event | None:
        """Grant or revoke ``role``; None (and no event) when nothing changes."""
        if (role in self.roles) == grant:
            return None
        roles = set(self.roles) | {role} if grant else set(self.roles) - {role}
        self.roles = sorted(roles)
        return self._record(
            "UserRoleGranted" if grant else "UserRoleRevoked", {"role": role, "roles": list(self.roles)}, now
        )

    def _set_failures(self, count: FailureCount) -> None:
        self.failed_attempts = count.failures
        self.first_failed_at = count.first_failed_at
        self.locked_until = count.locked_until

    def _record(self, event_type: str, data: dict[str, Any], now: datetime) -> Event:
        self.version = (self.version or 0) + 1
        event = new_event(event_type, self.id, self.version, data, time=now)
        self.events.append(event)
        return event


class UserSession(db.Model):
    """A login's refresh-token family: one refresh token is valid at a time.

    Every refresh rotates ``refresh_jti``; a refresh token whose id is not the current one
    was used before, so the family is ended (RFC 9700, section 4.14: reuse detection).
    """

    __tablename__ = "sessions"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("users.id"), nullable=False)
    refresh_jti: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    end_reason: Mapped[str | None] = mapped_column(Text)
    # HMAC of the user agent (``auth_api.secrets``): tells a new device without keeping the agent.
    device_key: Mapped[bytes | None] = mapped_column(LargeBinary)

    __table_args__ = (
        Index("ix_sessions_user", "user_id"),
        Index("ix_sessions_user_device", "user_id", "device_key"),
    )

    @classmethod
    def start(cls, user_id: uuid.UUID, now: datetime, device_key: bytes | None = None) -> UserSession:
        return cls(
            id=uuid.uuid4(),
            user_id=user_id,
            refresh_jti=uuid.uuid4(),
            created_at=now,
            last_used_at=now,
            device_key=device_key,
        )

    @property
    def active(self) -> bool:
        return self.ended_at is None

    def rotate(self, now: datetime) -> uuid.UUID:
        """A new current refresh token id; the one just used is spent."""
        self.refresh_jti = uuid.uuid4()
        self.last_used_at = now
        return self.refresh_jti


class EmailChange(db.Model):
    """A requested email change waiting for its code; one per user, a new request replaces it.

    Only an HMAC of the code is kept: a copy of this table confirms nothing.
    """

    __tablename__ = "email_changes"

    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("users.id"), primary_key=True)
    new_email: Mapped[str] = mapped_column(Text, nullable=False)
    code_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")


class DataKeyRow(db.Model):
    """A user's data key, wrapped by a master key (``event_contract.crypto``).

    Deleting the row erases the user: every event of theirs ever written becomes unreadable.
    No foreign key: the row must be deletable in the transaction that deletes the user.
    """

    __tablename__ = "data_keys"

    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    key_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    master_key_id: Mapped[str] = mapped_column(Text, nullable=False)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class LoginFailures(db.Model):
    """Failed logins per normalised email, account or not (``auth_api.lockout``).

    Keyed by an HMAC of the email, never the email itself: an unknown email locks like a
    registered one, and the table leaks no address.
    """

    __tablename__ = "login_failures"

    email_key: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    first_failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def count(self) -> FailureCount:
        return FailureCount(self.failures or 0, self.first_failed_at, self.locked_until)

    @count.setter
    def count(self, value: FailureCount) -> None:
        self.failures = value.failures
        self.first_failed_at = value.first_failed_at
        self.locked_until = value.locked_until


class OutboxMessage(db.Model):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True, nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    event_type: Mapped[str] = mapped_column(Text, nullable=False)
    # The serialized CloudEvent, published byte for byte.
    payload: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB, nullable=False, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # The relay only ever scans unpublished rows; this index stays small.
        Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
        Index("ix_outbox_published_at", "published_at", postgresql_where=text("published_at IS NOT NULL")),
    )
