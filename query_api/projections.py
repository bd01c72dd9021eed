"""Applying user events to the read model, idempotently and order-independently.

Every event's id goes into ``processed_events`` in the transaction of its effect; only a
new id has an effect (``query_api.effects``). Effects are commutative (counters, greatest
timestamps, inserts keyed by event id) or guarded by the aggregate version, so any order and
any number of deliveries converge to the read model of in-order, once-only application.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, func, literal
from sqlalchemy.dialects.postgresql import insert

from event_contract import Event, InvalidEvent, parse_event
from query_api.effects import HANDLERS, apply_events
from query_api.models import DeadLetter, ProcessedEvent
from query_api.transient import is_transient

log = logging.getLogger(__name__)

processed_events = ProcessedEvent.__table__
dead_letters = DeadLetter.__table__


@dataclass(frozen=True)
class Delivery:
    """One Kafka record as the projector hands it over (JSON-safe for Celery)."""

    value: str
    encoding: str = "utf-8"  # or "base64" for bytes that are not UTF-8
    source: str | None = None
    request_id: str | None = None

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> Delivery:
        return cls(
            value=item["value"],
            encoding=item.get("encoding", "utf-8"),
            source=item.get("source"),
            request_id=item.get("request_id"),
        )

    @classmethod
    def from_bytes(
        cls, raw: bytes | None, source: str | None = None, request_id: str | None = None
    ) -> Delivery:
        raw = raw or b""
        try:
            return cls(raw.decode("utf-8"), "utf-8", source, request_id)
        except UnicodeDecodeError:
            return cls(base64.b64encode(raw).decode("ascii"), "base64", source, request_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "encoding": self.encoding,
            "source": self.source,
            "request_id": self.request_id,
        }

    def raw(self) -> bytes:
        if self.encoding == "base64":
            return base64.b64decode(self.value)
        return self.value.encode("utf-8")


@dataclass
class BatchReport:
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    applied_events: list[Event] = field(default_factory=list)


# --- batches ----------------------------------------------------------------------------


class BatchNeedsSplit(Exception):
    """A non-transient database error inside a batch: apply event by event instead."""


def parse_deliveries(
    deliveries: Iterable[Delivery],
) -> tuple[list[tuple[Delivery, Event]], list[tuple[Delivery, str]]]:
    good: list[tuple[Delivery, Event]] = []
    poison: list[tuple[Delivery, str]] = []
    for delivery in deliveries:
        try:
            event = parse_event(delivery.raw())
        except Exception as exc:
            # Whatever parsing raises marks the event as poison: an exception escaping here
            # would fail the whole task, and a failed task is acked, losing its good events too.
            message = str(exc) if isinstance(exc, InvalidEvent) else f"{exc.__class__.__name__}: {exc}"
            poison.append((delivery, message))
            continue
        if event.type not in HANDLERS:
            poison.append((delivery, f"no projection for event type {event.type!r}"))
            continue
        good.append((delivery, event))
    # One lock order for every batch (user, then version): concurrent batches do not deadlock.
    good.sort(key=lambda pair: (pair[1].subject, pair[1].sequence, pair[1].id))
    return good, poison


# One statement object for every batch: executed with a list of rows, it is compiled once
# (a .values(rows) statement would be compiled anew for each batch size, ~50 ms a batch).
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
        {e.id: {"event_id": e.id, "event_type": e.type, "occurred_at": e.time} for e in events}.values(),
        key=lambda row: row["event_id"],
    )
    return {row[0] for row in conn.execute(CLAIM, rows)}


def apply_batch(conn: Connection, deliveries: list[Delivery]) -> BatchReport:
    """Apply a batch in the caller's transaction: good events applied, poison dead-lettered."""
    good, poison = parse_deliveries(deliveries)
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
    for delivery, error in poison:
        record_dead_letter(conn, delivery, error)
        report.dead_lettered += 1
    return report


def apply_one_by_one(conn: Connection, deliveries: list[Delivery]) -> BatchReport:
    """The split path: each event in its own savepoint, so one bad event fails alone."""
    good, poison = parse_deliveries(deliveries)
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
    return report


def apply_or_split(engine: Engine, deliveries: list[Delivery]) -> BatchReport:
    """Apply a batch in one transaction; if it breaks the database, event by event instead.

    Transient errors are raised for the caller to retry. Used by the projection task and by
    the rebuild, so an event that passes the contract but breaks the database (an integer
    column overflow, a NUL in a text field) is dead-lettered there too instead of failing all.
    """
    try:
        with engine.begin() as conn:
            return apply_batch(conn, deliveries)
    except Exception as exc:
        if is_transient(exc):
            raise
        # Something in the batch breaks the database: split it so only that event fails.
        log.warning("projection: batch failed (%s), applying one by one", exc.__class__.__name__)
    with engine.begin() as conn:
        return apply_one_by_one(conn, deliveries)


def record_dead_letter(conn: Connection, delivery: Delivery, error: str) -> None:
    raw = delivery.raw()
    event_id, event_type = _best_effort_ids(raw)
    value, encoding = delivery.value, delivery.encoding
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL (psycopg2 refuses it before sending): such a value
        # is kept as base64, or recording it would fail and take the whole task down.
        value, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    stmt = insert(dead_letters).values(
        fingerprint=hashlib.sha256(raw).hexdigest(),
        event_id=_storable(event_id),
        event_type=_storable(event_type),
        raw=value,
        raw_encoding=encoding,
        error=_storable(error),
        source=_storable(delivery.source),
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[dead_letters.c.fingerprint],
            set_={
                "attempts": dead_letters.c.attempts + 1,
                "last_seen_at": func.now(),
                "error": stmt.excluded.error,
                "resolved_at": literal(None),
            },
        )
    )
    log.warning("dead-lettered an event: %s", error, extra={"event_id": event_id, "source": delivery.source})


def _storable(text: str | None) -> str | None:
    """Text PostgreSQL accepts: a NUL (e.g. a JSON "\\u0000" in the type) is shown escaped."""
    return text.replace("\x00", "\\x00") if text is not None else None


def _best_effort_ids(raw: bytes) -> tuple[str | None, str | None]:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):  # same failures as parse_event's, never raised here
        return None, None
    if not isinstance(document, dict):
        return None, None
    event_id, event_type = document.get("id"), document.get("type")
    return (
        str(event_id)[:64] if event_id is not None else None,
        str(event_type)[:64] if event_type is not None else None,
    )
