"""The read model's tables (``query_db``): written by the projection, read by the query API.

Plain SQLAlchemy, no Flask: the projection workers and the rebuild import these tables
without loading a web framework. Projected tables live in the schema ``read_model`` so a
rebuild can fill a fresh schema and swap it in by renaming; ``dead_letters`` lives in
``public`` and survives rebuilds.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Index, Integer, Text, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

READ_MODEL_SCHEMA = "read_model"


class Base(DeclarativeBase):
    pass


class UserView(Base):
    __tablename__ = "users"
    __table_args__ = (
        Index("ix_users_email", "email"),
        {"schema": READ_MODEL_SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    email: Mapped[str | None] = mapped_column(Text)
    # Version of the event that set ``email`` (UserRegistered, EmailChanged): the higher wins.
    email_version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="active")
    # Version of the UserDeactivated / UserReactivated that set ``status``.
    status_version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    roles: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    # Version of the event that set ``roles``: the higher version wins whatever the order.
    roles_version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    registered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_failed_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    login_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    failed_login_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # Set by UserDeleted: the row is a tombstone (id and this time, nothing else), so that
    # events of the account applied later, in any order, cannot bring it back.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginHistoryEntry(Base):
    __tablename__ = "login_history"
    __table_args__ = (
        Index("ix_login_history_user_time", "user_id", "occurred_at", "event_id"),
        {"schema": READ_MODEL_SCHEMA},
    )

    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    email: Mapped[str] = mapped_column(Text, nullable=False)
    outcome: Mapped[str] = mapped_column(Text, nullable=False)  # "success" | "failure"
    reason: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class SessionView(Base):
    """A login session (refresh-token family): device, start and end."""

    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_user_started", "user_id", "started_at"),
        {"schema": READ_MODEL_SCHEMA},
    )

    session_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ip: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    end_reason: Mapped[str | None] = mapped_column(Text)
    # The latest of its start and its refreshes.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    new_device: Mapped[bool | None] = mapped_column(Boolean)


class TimelineEntry(Base):
    """One row per event of an account: its history, and what ``as_of`` folds."""

    __tablename__ = "timeline"
    __table_args__ = (
        Index("ix_timeline_user_sequence", "user_id", "sequence", "event_id"),
        {"schema": READ_MODEL_SCHEMA},
    )

    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    sequence: Mapped[int] = mapped_column(Integer, nullable=False)
    event_type: Mapped[str] = mapped_column(Text, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # What the event shows (``projector.projection.timeline``): never a secret such as a code.
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")


class ProcessedEvent(Base):
    """One row per applied event, written in the transaction of its effect."""

    __tablename__ = "processed_events"
    __table_args__ = (
        Index("ix_processed_events_processed_at", "processed_at"),
        # Read-your-writes: "are all of this user's events up to sequence N applied?"
        Index("ix_processed_events_user_sequence", "user_id", "sequence"),
        {"schema": READ_MODEL_SCHEMA},
    )

    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    event_type: Mapped[str] = mapped_column(Text, nullable=False)
    user_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    sequence: Mapped[int | None] = mapped_column(Integer)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    processed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class DeadLetter(Base):
    """An event that could not be applied, kept with its error for inspection and replay."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # sha256 of the raw bytes: the same poison delivered again bumps ``attempts``.
    fingerprint: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    event_id: Mapped[str | None] = mapped_column(Text)
    event_type: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text, nullable=False)
    raw_encoding: Mapped[str] = mapped_column(Text, nullable=False, server_default="utf-8")
    error: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str | None] = mapped_column(Text)  # topic/partition/offset
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    first_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    last_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
