"""Operator commands: ``flask --app auth_api grant-role EMAIL ROLE``, ``revoke-role``,
``deactivate-user EMAIL [--reason TEXT]``, ``reactivate-user EMAIL``, ``delete-user EMAIL``
and ``rotate-master-key``."""

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

    @app.cli.command("deactivate-user")
    @click.argument("email")
    @click.option("--reason", default=None, help="Why (kept in the UserDeactivated event).")
    def deactivate_user(email: str, reason: str | None) -> None:
        """Deactivate the user with EMAIL: every session ends, login and refresh stop."""
        if reason is not None and (len(reason) > 200 or "\0" in reason):
            raise click.BadParameter("at most 200 characters, no NUL", param_hint="--reason")
        outcome = _on_user(commands.deactivate, email, reason=reason)
        _report(outcome, "deactivated", f"{outcome.ended_sessions} session(s) ended")

    @app.cli.command("delete-user")
    @click.argument("email")
    @click.confirmation_option(prompt="Erase this account and every trace of it? This cannot be undone.")
    def delete_user(email: str) -> None:
        """Erase the user with EMAIL (emits UserDeleted; destroys its data key)."""
        _delete_user(email)

    @app.cli.command("rotate-master-key")
    def rotate_master_key() -> None:
        """Re-wrap every data key with the current master key (the first of DATA_MASTER_KEYS)."""
        from auth_api.key_rotation import rewrap_all

        side = current_app.extensions["write_side"]
        moved = rewrap_all(side.master)
        click.echo(f"re-wrapped {moved} data key(s) with master key {side.master.current!r}")

    @app.cli.command("reactivate-user")
    @click.argument("email")
    def reactivate_user(email: str) -> None:
        """Reactivate the user with EMAIL."""
        _report(_on_user(commands.reactivate, email), "reactivated")


def _delete_user(email: str) -> None:
    side = current_app.extensions["write_side"]
    try:
        outcome = commands.delete_user(side.unit_of_work(), side.failure_secret, email)
    except commands.UnknownUser as exc:
        raise click.ClickException("no user with that email") from exc
    _report(outcome, "deleted", f"{outcome.ended_sessions} session(s) ended; its data key is destroyed")


def _on_user(command, email: str, **kwargs: object) -> commands.Outcome:  # noqa: ANN001 - a command
    uow = current_app.extensions["write_side"].unit_of_work()
    try:
        return command(uow, email, **kwargs)
    except commands.UnknownUser as exc:
        raise click.ClickException(f"no user with email {email!r}") from exc


def _report(outcome: commands.Outcome, done: str, more: str = "") -> None:
    # The operator typed the email: echoing the account's id instead keeps it out of shell logs.
    if outcome.event_id is None:
        click.echo(f"user {outcome.account.id} unchanged: already {done}")
    else:
        tail = f"; {more}" if more else ""
        click.echo(f"user {outcome.account.id} {done} (event {outcome.event_id}){tail}")


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
