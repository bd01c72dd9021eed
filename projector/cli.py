"""``python -m projector``: the Kafka-to-Celery hand-off and the read model's operator commands.

python -m projector                        consume user-events until SIGTERM (the default)
python -m projector rebuild                replay the topic into fresh tables, swap them in
python -m projector dead-letters list [--all]
python -m projector dead-letters replay [ID ...] [--all]
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from typing import TYPE_CHECKING

import click

from observability.logs import configure_logging
from observability.watchdog import LoopWatchdog
from settings import Settings, load_settings

if TYPE_CHECKING:  # the operator commands' imports: the consumer loop needs none of them
    from sqlalchemy import Engine

log = logging.getLogger("projector")


def _query_engine(settings: Settings) -> Engine:
    from sqlalchemy import create_engine

    # query_db's owner role: the rebuild creates and renames schemas.
    url = settings.projection_database_url
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 3})


@click.group(invoke_without_command=True)
@click.pass_context
def main(ctx: click.Context) -> None:
    """The projector: consumes user-events and maintains the read model."""
    ctx.obj = load_settings()
    if ctx.invoked_subcommand is None:
        ctx.invoke(consume)


@main.command()
@click.pass_obj
def consume(settings: Settings) -> None:
    """Hand events to the projection workers until SIGTERM or SIGINT (metrics on PROJECTOR_METRICS_PORT)."""
    from prometheus_client import start_http_server

    from observability.metrics import CONSUMER_LAG
    from projector.handoff import build_projector

    configure_logging(settings.service_name, settings.log_level)

    def record_lag(stats_json: str) -> None:
        """librdkafka statistics callback: consumer lag of every assigned partition."""
        stats = json.loads(stats_json)
        for topic, detail in stats.get("topics", {}).items():
            for partition, numbers in detail.get("partitions", {}).items():
                lag = numbers.get("consumer_lag", -1)
                if partition != "-1" and lag >= 0:
                    CONSUMER_LAG.labels(topic, partition).set(lag)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if settings.projector_metrics_port:
        start_http_server(settings.projector_metrics_port, addr=settings.metrics_address)
    projector = build_projector(settings, **{"stats_cb": record_lag, "statistics.interval.ms": 5000})
    watchdog = LoopWatchdog("projector", settings.consumer_stall_seconds)
    projector.beat = watchdog.beat
    watchdog.start()
    projector.run(stop)


@main.command()
@click.option("--batch-size", default=2000, show_default=True, help="Events per transaction.")
@click.pass_obj
def rebuild(settings: Settings, batch_size: int) -> None:
    """Replay the whole topic into fresh tables and swap them in; the API keeps serving."""
    from tqdm import tqdm

    from projector.projection.rebuild import rebuild_read_model

    bar = tqdm(unit="event", dynamic_ncols=True, desc="rebuild")

    def phase(name: str) -> None:
        if name == settings.rebuild_pause_at:
            # A test hook (REBUILD_PAUSE_AT): hold here, at a known point, to be killed.
            click.echo(f"rebuild: paused at {name}", err=True)
            time.sleep(600)

    def total(count: int) -> None:
        bar.total = count
        bar.refresh()

    report = rebuild_read_model(
        _query_engine(settings),
        settings,
        batch_size=batch_size,
        on_total=total,
        on_progress=bar.update,
        on_phase=phase,
    )
    bar.close()
    click.echo(
        f"rebuilt from {report.events} events ({report.applied} applied, "
        f"{report.dead_lettered} dead-lettered, {report.caught_up} caught up after the swap) "
        f"in {report.seconds:.1f} s"
    )


@main.group("dead-letters")
def dead_letters_group() -> None:
    """Inspect and replay events that could not be applied."""


@dead_letters_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include resolved dead letters.")
@click.pass_obj
def list_dead_letters(settings: Settings, show_all: bool) -> None:
    from sqlalchemy import select

    from read_model import DeadLetter

    query = select(DeadLetter).order_by(DeadLetter.id)
    if not show_all:
        query = query.where(DeadLetter.resolved_at.is_(None))
    with _query_engine(settings).connect() as conn:
        rows = conn.execute(query).all()
    for row in rows:
        state = "resolved" if row.resolved_at else "open"
        click.echo(
            f"{row.id}\t{state}\tattempts={row.attempts}\tevent={row.event_id or '-'}"
            f"\ttype={row.event_type or '-'}\tsource={row.source or '-'}\terror={row.error}"
        )
    click.echo(f"{len(rows)} dead letter(s)")


@dead_letters_group.command("replay")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "replay_all", is_flag=True, help="Replay every open dead letter.")
@click.pass_obj
def replay_dead_letters(settings: Settings, ids: tuple[int, ...], replay_all: bool) -> None:
    """Apply dead letters again (after a fix); resolved ones are marked as such."""
    from sqlalchemy import func, select, update

    from celery_config.engines import worker_engine
    from event_contract import Delivery
    from event_contract.keystore import batch_keys
    from projector.projection.apply import apply_one_by_one
    from projector.projection.dead_letters import dead_letters
    from read_model import DeadLetter

    if not ids and not replay_all:
        raise click.UsageError("name dead letter ids, or pass --all")
    query = select(DeadLetter).where(DeadLetter.resolved_at.is_(None)).order_by(DeadLetter.id)
    if ids:
        query = query.where(DeadLetter.id.in_(ids))
    engine = _query_engine(settings)
    with engine.connect() as conn:
        letters = conn.execute(query).all()
    resolved = 0
    for letter in letters:
        delivery = Delivery(letter.raw, letter.raw_encoding, letter.source)
        with engine.begin() as conn:
            keys = batch_keys(
                worker_engine(settings.projection_keys_database_url),
                settings.data_master_keys,
                settings.data_master_keys_file,
            )
            report = apply_one_by_one(conn, [delivery], keys)
            if report.dead_lettered == 0:
                conn.execute(
                    update(dead_letters).where(dead_letters.c.id == letter.id).values(resolved_at=func.now())
                )
                resolved += 1
    click.echo(f"replayed {len(letters)}, resolved {resolved}, still failing {len(letters) - resolved}")
