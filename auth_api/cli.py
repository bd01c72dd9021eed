"""Operator commands: ``flask --app auth_api grant-role EMAIL ROLE`` and ``revoke-role``."""

from __future__ import annotations

import click
from flask import Flask, current_app

from auth_api.accounts import AccountService, CommandContext, UnknownUser
from auth_api.extensions import db


def register_cli(app: Flask) -> None:
    @app.cli.command("grant-role")
    @click.argument("email")
    @click.argument("role")
    def grant_role(email: str, role: str) -> None:
        """Grant ROLE to the user with EMAIL (emits UserRoleGranted)."""
        _change_role(email, role, grant=True)

    @app.cli.command("revoke-role")
    @click.argument("email")
    @click.argument("role")
    def revoke_role(email: str, role: str) -> None:
        """Revoke ROLE from the user with EMAIL (emits UserRoleRevoked)."""
        _change_role(email, role, grant=False)


def _change_role(email: str, role: str, *, grant: bool) -> None:
    role = role.strip().lower()
    if not role or len(role) > 64:
        raise click.BadParameter("a role is 1 to 64 characters", param_hint="ROLE")
    service = AccountService(session=db.session, on_commit=current_app.extensions["relay_kick"])
    try:
        user, event_id = service.change_role(email, role, grant=grant, ctx=CommandContext())
    except UnknownUser as exc:
        raise click.ClickException(f"no user with email {email!r}") from exc
    if event_id is None:
        click.echo(f"{user.email} roles unchanged: {', '.join(user.roles)}")
    else:
        click.echo(f"{user.email} roles: {', '.join(user.roles)} (event {event_id})")
