"""Rebuilding the read model from the topic while the query API keeps serving.

1. Fill a fresh schema ``read_model_next`` from offset 0 up to the end offsets seen at start.
2. Swap it in by renaming schemas in one transaction (readers never see a half-built model).
3. Catch up: apply everything from those end offsets to the new end, into the live schema.
   The live pipeline may have applied some of these to the old schema before the swap;
   ``processed_events`` makes applying them again harmless.
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

from event_contract import Delivery
from projector.projection.apply import apply_or_split
from read_model import READ_MODEL_SCHEMA
from settings import Settings

log = logging.getLogger(__name__)

NEXT_SCHEMA = f"{READ_MODEL_SCHEMA}_next"
# The projected tables; processed_events first, the lock order of the projection workers.
TABLES = ("processed_events", "users", "login_history", "sessions")
REBUILD_LOCK_KEY = 0x72656275696C64  # "rebuild": one rebuild at a time

Progress = Callable[[int], None]


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
) -> RebuildReport:
    started = time.monotonic()
    report = RebuildReport()
    with engine.connect() as lock_conn:
        if not lock_conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": REBUILD_LOCK_KEY}).scalar():
            raise RuntimeError("another rebuild is running")
        try:
            _create_next_schema(engine)
            consumer = _reader(settings)
            try:
                ends = _end_offsets(consumer, settings.kafka_topic)
                on_total(sum(ends.values()))
                # From each partition's first retained offset (0 while retention is forever).
                starts = _start_offsets(consumer, settings.kafka_topic, ends)
                next_engine = engine.execution_options(schema_translate_map={READ_MODEL_SCHEMA: NEXT_SCHEMA})
                _copy_range(
                    consumer, next_engine, settings.kafka_topic, starts, ends, batch_size, report, on_progress
                )
                _swap(engine)
                new_ends = _end_offsets(consumer, settings.kafka_topic)
                before = report.events
                _copy_range(
                    consumer, engine, settings.kafka_topic, ends, new_ends, batch_size, report, lambda n: None
                )
                report.caught_up = report.events - before
            finally:
                consumer.close()
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


def _swap(engine: Engine) -> None:
    with engine.begin() as conn:
        # Renaming a schema takes no lock on its tables, and names resolve per statement: a
        # projection transaction open across the swap would put its processed_events row in
        # the old schema and its effect in the new one, where the catch-up applies the event
        # once more (counters counted twice). Locking the live tables first waits for such a
        # transaction to end; statements that queue behind the lock resolve the name again
        # once the swap commits and land in the new schema. The order is the workers' own
        # (processed_events first), so the lock does not deadlock with them.
        tables = ", ".join(
            f"{READ_MODEL_SCHEMA}.{table}" for table in TABLES
        )
        conn.execute(text(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE"))
        conn.execute(text(f"ALTER SCHEMA {READ_MODEL_SCHEMA} RENAME TO {READ_MODEL_SCHEMA}_old"))
        conn.execute(text(f"ALTER SCHEMA {NEXT_SCHEMA} RENAME TO {READ_MODEL_SCHEMA}"))
    log.info("rebuild: new read model swapped in")


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
    engine: Engine,
    topic: str,
    starts: dict[int, int],
    ends: dict[int, int],
    batch_size: int,
    report: RebuildReport,
    on_progress: Progress,
) -> None:
    wanted = {p for p in ends if ends[p] > starts.get(p, 0)}
    if not wanted:
        return
    consumer.assign([TopicPartition(topic, p, starts.get(p, 0)) for p in wanted])
    positions = {p: starts.get(p, 0) for p in wanted}
    while any(positions[p] < ends[p] for p in wanted):
        messages = consumer.consume(batch_size, 1.0)
        batch = []
        for message in messages:
            if message.error() is not None:
                continue
            partition = message.partition()
            if message.offset() >= ends[partition]:
                continue  # past the snapshot: the catch-up (or the live pipeline) takes it
            positions[partition] = message.offset() + 1
            batch.append(Delivery.from_record(message))
        if batch:
            # Split like the projection task does: one event that breaks the database must be
            # dead-lettered, not abort the whole rebuild.
            result = apply_or_split(engine, batch)
            report.events += len(batch)
            report.applied += result.applied
            report.dead_lettered += result.dead_lettered
            on_progress(len(batch))
    consumer.unassign()
