"""Response bodies of the read API: one source for the answers and the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class UserOut(BaseModel):
    id: str
    email: str | None
    roles: list[str]
    registered_at: datetime | None
    last_login_at: datetime | None
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
    ip: str | None
    user_agent: str | None


class HealthOut(BaseModel):
    status: str
