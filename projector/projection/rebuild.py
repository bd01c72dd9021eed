"""Rebuilding the read model from the topic while the query API keeps serving.

1. Fill a fresh schema ``read_model_next`` from offset 0 up to the end offsets seen at start.
2. Catch up into ``read_model_next`` from there to the topic's new end, again until the
   gap is small (the live pipeline keeps applying to the live schema meanwhile).
3. Swap, in ONE transaction: lock the live tables (waits for projection transactions in
   flight, holds new ones), read the topic's end once more, apply the last gap into
   ``read_model_next``, then rename the schemas. Every event the live pipeline applied
   to the old tables is below that end, so it is in the new tables too.

So the rebuild can die anywhere (SIGKILL, Ctrl-C): before the swap commits, the live schema
is untouched and the live pipeline keeps it current (the next run drops the half-built
``read_model_next``); once it commits, the new schema is complete, and only the old one
remains to drop (the next run drops it). Nothing needs resuming, and reads never go
backwards: they pause (blocked by the lock) only for the last gap's apply. Events applied
twice (by the swap's catch-up and by a worker later) are deduplicated by ``processed_events``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import Connection, Engine, text

from celery_config.engines import worker_engine
from event_contract import Delivery
from event_contract.keystore import SqlDataKeys, batch_keys
from projector.projection.apply import BatchReport, apply_batch, apply_one_by_one, apply_or_split
from projector.projection.transient import is_transient
from read_model import READ_MODEL_SCHEMA
from settings import Settings

log = logging.getLogger(__name__)

NEXT_SCHEMA = f"{READ_MODEL_SCHEMA}_next"
# The projected tables; processed_events first, the lock order of the projection workers.
TABLES = ("processed_events", "users", "login_history", "timeline", "sessions")
REBUILD_LOCK_KEY = 0x72656275696C64  # "rebuild": one rebuild at a time
TO_NEXT = {READ_MODEL_SCHEMA: NEXT_SCHEMA}
# Phases a caller can observe (``on_phase``): the operator's progress, and the kill tests'
# points. "catch_up" is inside the swap transaction, with the live tables locked.
PHASES = ("before_copy", "copy", "catch_up", "swapped")

Progress = Callable[[int], None]
Apply = Callable[[list[Delivery]], BatchReport]


@dataclass
class RebuildReport:
    events: int = 0
    applied: int = 0
    dead_lettered: int = 0
    caught_up: int = 0
    seconds: float = 0.0


def rebuild_read_model(
    engine: Engine,
    settings: Settings,
    *,
    batch_size: int = 2000,
    on_total: Callable[[int], None] = lambda total: None,
    on_progress: Progress = lambda done: None,
    on_phase: Callable[[str], None] = lambda phase: None,
    catch_up_rounds: int = 5,
) -> RebuildReport:
    started = time.monotonic()
    report = RebuildReport()
    with engine.connect() as lock_conn:
        if not lock_conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": REBUILD_LOCK_KEY}).scalar():
            raise RuntimeError("another rebuild is running")
        try:
            # What a killed run left: a half-built next schema, or an old one not yet dropped.
            _create_next_schema(engine)
            consumer = _reader(settings)
            try:
                topic = settings.kafka_topic
                ends = _end_offsets(consumer, topic)
                on_total(sum(ends.values()))
                # From each partition's first retained offset (0 while retention is forever).
                starts = _start_offsets(consumer, topic, ends)
                next_engine = engine.execution_options(schema_translate_map=TO_NEXT)

                def into_next(batch: list[Delivery]) -> BatchReport:
                    return apply_or_split(next_engine, batch, _keys(settings))

                on_phase("before_copy")
                _copy_range(
                    consumer, topic, starts, ends, batch_size, into_next, report, on_progress, on_phase
                )
                copied = report.events
                position = ends
                for _ in range(catch_up_rounds):  # shrink the gap the swap will apply under its lock
                    new_ends = _end_offsets(consumer, topic)
                    gap = sum(new_ends[p] - position.get(p, 0) for p in new_ends)
                    _copy_range(consumer, topic, position, new_ends, batch_size, into_next, report)
                    position = new_ends
                    if gap <= batch_size:
                        break

                def final_catch_up(conn: Connection) -> None:
                    # Nothing applies to the live tables now, and all they hold came from
                    # below this end: the next schema gets everything they have.
                    last = _end_offsets(consumer, topic)
                    here = conn.execution_options(schema_translate_map=TO_NEXT)
                    _copy_range(
                        consumer,
                        topic,
                        position,
                        last,
                        batch_size,
                        lambda b: _apply_here(here, b, _keys(settings)),
                        report,
                    )

                _swap(engine, final_catch_up, on_phase)
                report.caught_up = report.events - copied
            finally:
                consumer.close()
            on_phase("swapped")
            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {READ_MODEL_SCHEMA}_old CASCADE"))
        finally:
            lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": REBUILD_LOCK_KEY})
            lock_conn.commit()
    report.seconds = time.monotonic() - started
    return report


def _create_next_schema(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {NEXT_SCHEMA} CASCADE"))
        conn.execute(text(f"DROP SCHEMA IF EXISTS {READ_MODEL_SCHEMA}_old CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {NEXT_SCHEMA}"))
        for table in TABLES:
            conn.execute(
                text(f"CREATE TABLE {NEXT_SCHEMA}.{table} (LIKE {READ_MODEL_SCHEMA}.{table} INCLUDING ALL)")
            )
        _keep_index_names(conn)


def _keep_index_names(conn: Connection) -> None:
    """Give the copied indexes the live names.

    LIKE ... INCLUDING ALL names them by PostgreSQL's defaults (``users_email_idx`` for
    ``ix_users_email``), so after a swap the indexes the migrations created by name were gone
    under those names, and a later migration or downgrade that drops one by name failed.
    """

    def by_shape(schema: str) -> dict[tuple[str, str], list[str]]:
        found: dict[tuple[str, str], list[str]] = {}
        for table, name, definition in conn.execute(
            text("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = :s ORDER BY 2"),
            {"s": schema},
        ):
            # "CREATE INDEX <name> ON <schema>.<table> USING ..." without name and schema.
            shape = re.sub(r" INDEX \S+ ON \S+ ", " INDEX ON ", definition)
            found.setdefault((table, shape), []).append(name)
        return found

    live = by_shape(READ_MODEL_SCHEMA)
    for key, copies in by_shape(NEXT_SCHEMA).items():
        for copy, name in zip(copies, live.get(key, []), strict=False):
            if copy != name:
                conn.execute(text(f'ALTER INDEX {NEXT_SCHEMA}."{copy}" RENAME TO "{name}"'))


def _swap(
    engine: Engine,
    catch_up: Callable[[Connection], None] = lambda conn: None,
    on_phase: Callable[[str], None] = lambda phase: None,
) -> None:
    """Apply the last gap into the next schema and rename it live, in one transaction."""
    with engine.begin() as conn:
        # Bounded waits, and a dead rebuild's backend notices its client is gone even while
        # it waits for the lock (readers queue behind a waiting ACCESS EXCLUSIVE request).
        conn.execute(
            text(
                "SELECT set_config('lock_timeout', '30s', true),"
                " set_config('client_connection_check_interval', '1s', true)"
            )
        )
        # Renaming a schema takes no lock on its tables, and names resolve per statement: a
        # projection transaction open across the swap would put its processed_events row in
        # the old schema and its effect in the new one. Locking the live tables first waits
        # for such a transaction to end; statements that queue behind the lock resolve the
        # name again once the swap commits and land in the new schema. The order is the
        # workers' own (processed_events first), so the lock does not deadlock with them.
        tables = ", ".join(f"{READ_MODEL_SCHEMA}.{table}" for table in TABLES)
        conn.execute(text(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE"))
        catch_up(conn)
        on_phase("catch_up")
        conn.execute(text(f"ALTER SCHEMA {READ_MODEL_SCHEMA} RENAME TO {READ_MODEL_SCHEMA}_old"))
        conn.execute(text(f"ALTER SCHEMA {NEXT_SCHEMA} RENAME TO {READ_MODEL_SCHEMA}"))
    log.info("rebuild: new read model swapped in")


def _keys(settings: Settings) -> SqlDataKeys:
    """The data keys as they are now: an erased user's events rebuild to nothing personal."""
    engine = worker_engine(settings.projection_keys_database_url)
    return batch_keys(engine, settings.data_master_keys, settings.data_master_keys_file)


def _apply_here(conn: Connection, batch: list[Delivery], keys: SqlDataKeys) -> BatchReport:
    """``apply_or_split`` inside the caller's transaction (a savepoint instead of a commit)."""
    savepoint = conn.begin_nested()
    try:
        result = apply_batch(conn, batch, keys)
        savepoint.commit()
        return result
    except Exception as exc:
        savepoint.rollback()
        if is_transient(exc):
            raise
    return apply_one_by_one(conn, batch, keys)


def _reader(settings: Settings) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            # Never commits: the group exists only to satisfy the client.
            "group.id": f"rebuild-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",
            "logger": log,
        }
    )


def _start_offsets(consumer: Consumer, topic: str, partitions: dict[int, int]) -> dict[int, int]:
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[0] for p in partitions}


def _end_offsets(consumer: Consumer, topic: str) -> dict[int, int]:
    metadata = consumer.list_topics(topic, timeout=30)
    if metadata.topics[topic].error is not None:
        raise RuntimeError(f"topic {topic}: {metadata.topics[topic].error}")
    return {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
        for p in sorted(metadata.topics[topic].partitions)
    }


def _copy_range(
    consumer: Consumer,
    topic: str,
    starts: dict[int, int],
    ends: dict[int, int],
    batch_size: int,
    apply: Apply,
    report: RebuildReport,
    on_progress: Progress = lambda done: None,
    on_phase: Callable[[str], None] = lambda phase: None,
) -> None:
    wanted = {p for p in ends if ends[p] > starts.get(p, 0)}
    if not wanted:
        return
    consumer.assign([TopicPartition(topic, p, starts.get(p, 0)) for p in wanted])
    positions = {p: starts.get(p, 0) for p in wanted}
    first = True
    while any(positions[p] < ends[p] for p in wanted):
        messages = consumer.consume(batch_size, 1.0)
        batch = []
        for message in messages:
            if message.error() is not None:
                continue
            partition = message.partition()
            if message.offset() >= ends[partition]:
                continue  # past this range: the next range (or the live pipeline) takes it
            positions[partition] = message.offset() + 1
            batch.append(Delivery.from_record(message))
        if batch:
            # Split like the projection task does: one event that breaks the database must be
            # dead-lettered, not abort the whole rebuild.
            result = apply(batch)
            report.events += len(batch)
            report.applied += result.applied
            report.dead_lettered += result.dead_lettered
            on_progress(len(batch))
            if first:
                on_phase("copy")
                first = False
    consumer.unassign()
