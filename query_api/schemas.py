"""Response bodies of the read API: one source for the answers and the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class UserOut(BaseModel):
    id: str
    email: str | None
    status: Literal["active", "deactivated"]
    roles: list[str]
    registered_at: datetime | None
    last_login_at: datetime | None
    password_changed_at: datetime | None
    login_count: int = Field(ge=0)
    failed_login_count: int = Field(ge=0)
    version: int = Field(ge=0, description="The user's aggregate version last projected.")


class LoginOut(BaseModel):
    event_id: str
    outcome: Literal["success", "failure"]
    reason: str | None
    ip: str | None
    user_agent: str | None
    occurred_at: datetime


class SessionOut(BaseModel):
    session_id: str
    started_at: datetime | None
    last_used_at: datetime | None = Field(description="Its start or its latest refresh.")
    ip: str | None
    user_agent: str | None
    new_device: bool | None = Field(
        description="No earlier session of the user came from this user agent (null: not known)."
    )


class HistoryEntryOut(BaseModel):
    """One event of an account's timeline."""

    event_id: str
    type: str = Field(description="The event type (UserRegistered, SessionStarted, EmailChanged, ...).")
    sequence: int = Field(ge=1, description="The account's version after the event.")
    occurred_at: datetime
    data: dict[str, Any] = Field(
        description="What the event shows: e.g. ip and user_agent of a login, reason of a session's end,"
        " new_email and expires_at of an email change request (never its code)."
    )


class HealthOut(BaseModel):
    status: str


class ExportedSession(SessionOut):
    ended_at: datetime | None
    end_reason: str | None


class ExportOut(BaseModel):
    """Everything the read side holds about the caller (right of access, GDPR article 15)."""

    exported_at: datetime
    account: UserOut
    sessions: list[ExportedSession] = Field(description="Every session, ended ones included.")
    logins: list[LoginOut] = Field(description="Every login attempt, newest first.")
    history: list[HistoryEntryOut] = Field(description="The account's whole timeline, newest first.")
