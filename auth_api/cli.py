"""Operator commands: ``flask --app auth_api grant-role EMAIL ROLE`` and ``revoke-role``."""

from __future__ import annotations

import click
from flask import Flask, current_app

from auth_api import commands


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
    uow = current_app.extensions["write_side"].unit_of_work()
    try:
        outcome = commands.change_role(uow, email, role, grant=grant)
    except commands.UnknownUser as exc:
        raise click.ClickException(f"no user with email {email!r}") from exc
    roles = ", ".join(outcome.account.roles)
    if outcome.event_id is None:
        click.echo(f"{outcome.account.email} roles unchanged: {roles}")
    else:
        click.echo(f"{outcome.account.email} roles: {roles} (event {outcome.event_id})")
