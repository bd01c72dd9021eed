"""Users with tokens, made through the public API (and the operator CLI for roles)."""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.cli import flask_cli
from tests.support.system import PASSWORD, System


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    token: str
    event_id: str  # of the last command
    consistency_token: str  # of the last command, for X-Consistency-Token
    refresh_token: str


def signed_up(system: System, *, admin: bool = False) -> Account:
    """A registered, logged-in user (an admin if asked), with its newest token."""
    user = system.register()
    if admin:
        granted = flask_cli("auth_api", "grant-role", user["email"], "admin")
        assert granted.returncode == 0, granted.stderr
    login = system.login(user["email"], PASSWORD)
    assert login.status_code == 200, login.text
    body = login.json()
    return Account(
        user["id"],
        user["email"],
        body["access_token"],
        body["event_id"],
        body["consistency_token"],
        body["refresh_token"],
    )
