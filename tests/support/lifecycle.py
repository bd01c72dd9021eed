"""Streams of one account's whole life (every event type), and the read model they should give.

Used by the unit tests of the folds and by the convergence property on the real database:
``account_streams`` draws users whose events have consecutive versions and times drawn
freely (so "latest" must not depend on order); ``expected_accounts`` is the read model of a
stream computed in plain Python, in version order, each event once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from event_contract import Event, new_event

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ROLES = ("admin", "editor", "auditor", "user")
STEPS = (
    "login",
    "failed",
    "refresh",
    "end",
    "grant",
    "revoke",
    "password",
    "email",
    "email-requested",
    "deactivate",
    "reactivate",
)
END_REASONS = ("logout", "logout-all", "password-change", "deactivation", "reuse-detected")
AGENTS = ("firefox/1", "curl/8", None)


class AccountBuilder:
    """Builds one account's events with consecutive versions, as the write side would."""

    def __init__(self, user: uuid.UUID | None = None, email: str | None = None) -> None:
        self.user = user or uuid.uuid4()
        self.email = email or f"life-{self.user.hex[:10]}@example.com"
        self.roles = {"user"}
        self.sessions: list[uuid.UUID] = []
        self.events: list[Event] = []

    def add(self, kind: str, data: dict[str, Any], time: datetime) -> Event:
        event = new_event(kind, self.user, len(self.events) + 1, data, time=time)
        self.events.append(event)
        return event

    def register(self, time: datetime = T0) -> AccountBuilder:
        self.add("UserRegistered", {"email": self.email, "roles": ["user"]}, time)
        return self

    def login(
        self,
        time: datetime,
        ip: str | None = "10.0.0.1",
        agent: str | None = "firefox/1",
        started_after: timedelta = timedelta(0),
    ) -> uuid.UUID:
        """UserLoggedIn then SessionStarted (``started_after`` it: the write side's clock may tick)."""
        session = uuid.uuid4()
        device = {"ip": ip, "user_agent": agent}
        self.add("UserLoggedIn", {"email": self.email, **device, "session_id": str(session)}, time)
        new_device = all(agent != e.data.get("user_agent") for e in self.events if e.type == "SessionStarted")
        self.add(
            "SessionStarted",
            {"session_id": str(session), "email": self.email, **device, "new_device": new_device},
            time + started_after,
        )
        self.sessions.append(session)
        return session

    def change_email(self, time: datetime, confirm: bool = True) -> None:
        new_email = f"new-{uuid.uuid4().hex[:10]}@example.com"
        expires = (time + timedelta(minutes=15)).isoformat()
        request = {"new_email": new_email, "code": self.code(), "expires_at": expires}
        self.add("EmailChangeRequested", request, time)
        if confirm:
            self.add("EmailChanged", {"email": new_email, "previous_email": self.email}, time)
            self.email = new_email

    @staticmethod
    def code() -> str:
        """A one-time code as the write side draws it (6 digits): must never be projected."""
        return f"{uuid.uuid4().int % 10**6:06d}"

    def role(self, kind: str, role: str, time: datetime) -> None:
        self.roles = self.roles | {role} if kind == "UserRoleGranted" else self.roles - {role}
        self.add(kind, {"role": role, "roles": sorted(self.roles)}, time)


@st.composite
def account_streams(draw: st.DrawFn, max_users: int = 3, max_steps: int = 10) -> list[Event]:
    """Several users, each registered (version 1) and then a random mix of every event type."""
    events: list[Event] = []
    moment = st.integers(0, 10**6).map(lambda s: T0 + timedelta(seconds=s))
    for _ in range(draw(st.integers(1, max_users))):
        account = AccountBuilder().register(draw(moment))
        for _ in range(draw(st.integers(0, max_steps))):
            step, time = draw(st.sampled_from(STEPS)), draw(moment)
            if step == "login":
                ip, agent = draw(st.sampled_from(["10.0.0.1", None])), draw(st.sampled_from(AGENTS))
                account.login(time, ip, agent, timedelta(microseconds=draw(st.sampled_from([0, 1, 900]))))
            elif step == "failed":
                reason = draw(st.sampled_from(["invalid_password", "account_locked"]))
                account.add("UserLoginFailed", {"email": account.email, "reason": reason}, time)
            elif step in ("refresh", "end"):
                # A known session mostly; sometimes one whose start this stream never holds.
                session = draw(st.sampled_from([*account.sessions, uuid.uuid4()]))
                if step == "refresh":
                    account.add("SessionRefreshed", {"session_id": str(session)}, time)
                else:
                    reason = draw(st.sampled_from(END_REASONS))
                    account.add("SessionEnded", {"session_id": str(session), "reason": reason}, time)
            elif step in ("grant", "revoke"):
                kind = "UserRoleGranted" if step == "grant" else "UserRoleRevoked"
                account.role(kind, draw(st.sampled_from(ROLES)), time)
            elif step == "password":
                account.add("PasswordChanged", {"email": account.email}, time)
            elif step in ("email", "email-requested"):
                account.change_email(time, confirm=step == "email")
            elif step == "deactivate":
                account.add("UserDeactivated", {"reason": draw(st.sampled_from([None, "abuse"]))}, time)
            else:
                account.add("UserReactivated", {}, time)
        events.extend(account.events)
    return events


def expected_accounts(events: list[Event]) -> dict[str, dict[str, Any]]:
    """Each user's row and sessions, applying the events in version order, each once."""
    users: dict[str, dict[str, Any]] = {}
    for event in sorted(events, key=lambda e: (e.user_id, e.sequence)):
        user = users.setdefault(
            str(event.user_id),
            {
                "login_count": 0,
                "failed_login_count": 0,
                "logins": 0,
                "status": "active",
                "sessions": {},
                "events": 0,
            },
        )
        user["version"] = event.sequence
        user["events"] += 1
        data, kind = event.data, event.type
        if kind == "UserRegistered":
            user.update(email=data["email"], registered_at=event.time, roles=data["roles"])
        elif kind == "EmailChanged":
            user["email"] = data["email"]
        elif kind in ("UserRoleGranted", "UserRoleRevoked"):
            user["roles"] = data["roles"]
        elif kind in ("UserDeactivated", "UserReactivated"):
            user["status"] = "deactivated" if kind == "UserDeactivated" else "active"
        elif kind == "PasswordChanged":
            user["password_changed_at"] = _latest(user.get("password_changed_at"), event.time)
        elif kind == "UserLoggedIn":
            user["login_count"] += 1
            user["last_login_at"] = _latest(user.get("last_login_at"), event.time)
        elif kind == "UserLoginFailed":
            user["failed_login_count"] += 1
            user["last_failed_login_at"] = _latest(user.get("last_failed_login_at"), event.time)
        if "session_id" in data and data["session_id"]:
            session = user["sessions"].setdefault(
                data["session_id"], {"started_at": None, "last_used_at": None, "ended_at": None}
            )
            if kind in ("UserLoggedIn", "SessionStarted"):
                session["started_at"] = min(session["started_at"] or event.time, event.time)
                session["device"] = (data.get("ip"), data.get("user_agent"))
            if kind in ("UserLoggedIn", "SessionStarted", "SessionRefreshed"):
                session["last_used_at"] = _latest(session["last_used_at"], event.time)
            if kind == "SessionStarted":
                session["new_device"] = data["new_device"]
            if kind == "SessionEnded":
                end = (event.time, data["reason"])
                if session["ended_at"] is None or end < (session["ended_at"], session["end_reason"]):
                    session["ended_at"], session["end_reason"] = end
        user["logins"] += kind in ("UserLoggedIn", "UserLoginFailed")
    return users


def _latest(current: datetime | None, moment: datetime) -> datetime:
    return moment if current is None or moment > current else current
