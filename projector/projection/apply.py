"""Applying user events to the read model, idempotently and order-independently.

Every event's id goes into ``processed_events`` in the transaction of its effect; only a
new id has an effect (``projector.projection.folds``). Effects are commutative (counters, greatest
timestamps, inserts keyed by event id) or guarded by the aggregate version, so any order and
any number of deliveries converge to the read model of in-order, once-only application.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.dialects.postgresql import insert

from event_contract import Delivery, Event, InvalidEvent, parse_event
from event_contract.crypto import DataKeys
from event_contract.keystore import SqlDataKeys
from projector.projection.dead_letters import record_dead_letter
from projector.projection.folds import HANDLERS, apply_events
from projector.projection.transient import is_transient
from read_model import ProcessedEvent

log = logging.getLogger(__name__)

processed_events = ProcessedEvent.__table__


@dataclass
class BatchReport:
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    applied_events: list[Event] = field(default_factory=list)


def parse_deliveries(
    deliveries: Iterable[Delivery], keys: DataKeys | None = None
) -> tuple[list[tuple[Delivery, Event]], list[tuple[Delivery, str]]]:
    """Parse (and decrypt with ``keys``) each delivery: the good events, and the poison."""
    deliveries = list(deliveries)
    if isinstance(keys, SqlDataKeys):  # one query for the batch's keys, not one per user
        keys.prefetch({user for d in deliveries if (user := _user_of(d)) is not None})
    good: list[tuple[Delivery, Event]] = []
    poison: list[tuple[Delivery, str]] = []
    for delivery in deliveries:
        try:
            event = parse_event(delivery.raw(), keys)
        except Exception as exc:
            if is_transient(exc):  # the key store is away: retry, never dead-letter
                raise
            # Whatever parsing raises marks the event as poison: an exception escaping here
            # would fail the whole task, and a failed task is acked, losing its good events too.
            message = str(exc) if isinstance(exc, InvalidEvent) else f"{exc.__class__.__name__}: {exc}"
            poison.append((delivery, message))
            continue
        if event.type not in HANDLERS:
            poison.append((delivery, f"no projection for event type {event.type!r}"))
            continue
        if delivery.key is not None and delivery.key != str(event.user_id):
            # Keyed to another user, the record sits in the wrong partition: its order
            # against that user's other events is not guaranteed, so it is not applied.
            poison.append((delivery, f"record key {delivery.key[:64]!r} is not the event's user"))
            continue
        good.append((delivery, event))
    # One lock order for every batch (user, then version): concurrent batches do not deadlock.
    good.sort(key=lambda pair: (pair[1].user_id, pair[1].sequence, pair[1].id))
    return good, poison


def _user_of(delivery: Delivery) -> uuid.UUID | None:
    try:
        return uuid.UUID(delivery.key) if delivery.key else None
    except ValueError:
        return None


# One statement object for every batch, executed with a list of rows: a .values(rows) statement
# would be compiled for each batch size (~50 ms a batch). SQLAlchemy 2.1 caches the compiled
# ON CONFLICT statements (2.0 compiled them on every execution: about 1.3 ms a batch in all).
CLAIM = (
    insert(processed_events)
    .on_conflict_do_nothing(index_elements=[processed_events.c.event_id])
    .returning(processed_events.c.event_id)
)


def claim_new(conn: Connection, events: list[Event]) -> set[Any]:
    """Record the events as processed; return the ids that were not processed before."""
    if not events:
        return set()
    rows = sorted(
        {
            e.id: {
                "event_id": e.id,
                "event_type": e.type,
                "occurred_at": e.time,
                "user_id": e.user_id,
                "sequence": e.sequence,
            }
            for e in events
        }.values(),
        key=lambda row: row["event_id"],
    )
    return {row[0] for row in conn.execute(CLAIM, rows)}


def apply_batch(conn: Connection, deliveries: list[Delivery], keys: DataKeys | None = None) -> BatchReport:
    """Apply a batch in the caller's transaction: good events applied, poison dead-lettered."""
    good, poison = parse_deliveries(deliveries, keys)
    report = BatchReport()
    new_ids = claim_new(conn, [event for _, event in good])
    for _, event in good:
        if event.id in new_ids:
            new_ids.discard(event.id)  # a duplicate inside the batch applies once
            report.applied_events.append(event)
        else:
            report.duplicates += 1
    apply_events(conn, report.applied_events)
    report.applied = len(report.applied_events)
    notify_applied(conn, report)
    for delivery, error in poison:
        record_dead_letter(conn, delivery, error)
        report.dead_lettered += 1
    return report


def apply_one_by_one(
    conn: Connection, deliveries: list[Delivery], keys: DataKeys | None = None
) -> BatchReport:
    """The split path: each event in its own savepoint, so one bad event fails alone."""
    good, poison = parse_deliveries(deliveries, keys)
    report = BatchReport()
    for delivery, event in good:
        savepoint = conn.begin_nested()
        try:
            if claim_new(conn, [event]):
                apply_events(conn, [event])
                report.applied += 1
                report.applied_events.append(event)
            else:
                report.duplicates += 1
            savepoint.commit()
        except Exception as exc:
            savepoint.rollback()
            if is_transient(exc):
                raise
            poison.append((delivery, f"{exc.__class__.__name__}: {exc}"[:2000]))
    for delivery, error in poison:
        record_dead_letter(conn, delivery, error)
        report.dead_lettered += 1
    notify_applied(conn, report)
    return report


# Read-your-writes waiters on the read API LISTEN on this channel; PostgreSQL delivers the
# notification at commit, so a woken waiter sees the batch.
NOTIFY_APPLIED = text("SELECT pg_notify('read_model_applied', '')")


def notify_applied(conn: Connection, report: BatchReport) -> None:
    if report.applied:
        conn.execute(NOTIFY_APPLIED)


def apply_or_split(engine: Engine, deliveries: list[Delivery], keys: DataKeys | None = None) -> BatchReport:
    """Apply a batch in one transaction; if it breaks the database, event by event instead.

    Transient errors are raised for the caller to retry. Used by the projection task and by
    the rebuild, so an event that passes the contract but breaks the database (an integer
    column overflow, a NUL in a text field) is dead-lettered there too instead of failing all.
    """
    try:
        with engine.begin() as conn:
            return apply_batch(conn, deliveries, keys)
    except Exception as exc:
        if is_transient(exc):
            raise
        # Something in the batch breaks the database: split it so only that event fails.
        log.warning("projection: batch failed (%s), applying one by one", exc.__class__.__name__)
    with engine.begin() as conn:
        return apply_one_by_one(conn, deliveries, keys)
