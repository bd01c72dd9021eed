"""Dead letters: events that could not be applied, kept with their error for inspection and replay."""

from __future__ import annotations

import base64
import hashlib
import json
import logging

from sqlalchemy import Connection, func, literal
from sqlalchemy.dialects.postgresql import insert

from event_contract import Delivery
from read_model import DeadLetter

log = logging.getLogger(__name__)
dead_letters = DeadLetter.__table__


def record_dead_letter(conn: Connection, delivery: Delivery, error: str) -> None:
    """Keep the delivery with its error; the same poison seen again bumps ``attempts``."""
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
