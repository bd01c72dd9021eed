"""Operator commands of the read side.

flask --app query_api dead-letters list [--all]
flask --app query_api dead-letters replay [ID ...] [--all]
flask --app query_api projections rebuild
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select, update

from query_api.extensions import db
from query_api.models import DeadLetter
from query_api.projections import Delivery, apply_one_by_one, dead_letters


def register_cli(app: Flask) -> None:
    group = AppGroup("dead-letters", help="Inspect and replay events that could not be applied.")

    @group.command("list")
    @click.option("--all", "show_all", is_flag=True, help="Include resolved dead letters.")
    def list_dead_letters(show_all: bool) -> None:
        query = select(DeadLetter).order_by(DeadLetter.id)
        if not show_all:
            query = query.where(DeadLetter.resolved_at.is_(None))
        rows = db.session.execute(query).scalars().all()
        for row in rows:
            state = "resolved" if row.resolved_at else "open"
            click.echo(
                f"{row.id}\t{state}\tattempts={row.attempts}\tevent={row.event_id or '-'}"
                f"\ttype={row.event_type or '-'}\tsource={row.source or '-'}\terror={row.error}"
            )
        click.echo(f"{len(rows)} dead letter(s)")

    @group.command("replay")
    @click.argument("ids", nargs=-1, type=int)
    @click.option("--all", "replay_all", is_flag=True, help="Replay every open dead letter.")
    def replay_dead_letters(ids: tuple[int, ...], replay_all: bool) -> None:
        """Apply dead letters again (after a fix); resolved ones are marked as such."""
        if not ids and not replay_all:
            raise click.UsageError("name dead letter ids, or pass --all")
        query = select(DeadLetter).where(DeadLetter.resolved_at.is_(None)).order_by(DeadLetter.id)
        if ids:
            query = query.where(DeadLetter.id.in_(ids))
        letters = db.session.execute(query).scalars().all()
        db.session.rollback()
        resolved = 0
        for letter in letters:
            delivery = Delivery(letter.raw, letter.raw_encoding, letter.source)
            with db.engine.begin() as conn:
                report = apply_one_by_one(conn, [delivery])
                if report.dead_lettered == 0:
                    conn.execute(
                        update(dead_letters)
                        .where(dead_letters.c.id == letter.id)
                        .values(resolved_at=db.func.now())
                    )
                    resolved += 1
        click.echo(f"replayed {len(letters)}, resolved {resolved}, still failing {len(letters) - resolved}")

    app.cli.add_command(group)
    register_rebuild_cli(app)


def register_rebuild_cli(app: Flask) -> None:
    group = AppGroup("projections", help="Maintain the read model.")

    @group.command("rebuild")
    @click.option("--batch-size", default=2000, show_default=True, help="Events per transaction.")
    def rebuild(batch_size: int) -> None:
        """Replay the whole topic into fresh tables and swap them in; the API keeps serving."""
        from tqdm import tqdm

        from query_api.rebuild import rebuild_read_model
        from settings import load_settings

        bar = tqdm(unit="event", dynamic_ncols=True, desc="rebuild")

        def total(count: int) -> None:
            bar.total = count
            bar.refresh()

        report = rebuild_read_model(
            db.engine, load_settings(), batch_size=batch_size, on_total=total, on_progress=bar.update
        )
        bar.close()
        click.echo(
            f"rebuilt from {report.events} events ({report.applied} applied, "
            f"{report.dead_lettered} dead-lettered, {report.caught_up} caught up after the swap) "
            f"in {report.seconds:.1f} s"
        )

    app.cli.add_command(group)
