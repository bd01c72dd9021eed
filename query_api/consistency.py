"""Read-your-writes: ``X-Consistency-Token: <event id>`` waits until that event is projected."""

from __future__ import annotations

import time
import uuid

from flask import current_app, request
from sqlalchemy import select

from query_api.extensions import db
from read_model import ProcessedEvent
from web.problems import Problem

HEADER = "X-Consistency-Token"


def wait_for_consistency_token() -> None:
    """Return once the named event is in the read model; 503 after the bounded wait."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return
    try:
        event_id = uuid.UUID(raw.strip())
    except ValueError as exc:
        raise Problem(422, "Unprocessable Content", f"{HEADER} must be an event id (UUID).") from exc
    deadline = time.monotonic() + float(current_app.config["CONSISTENCY_WAIT_SECONDS"])
    delay = 0.005
    while True:
        seen = db.session.execute(
            select(ProcessedEvent.event_id).where(ProcessedEvent.event_id == event_id)
        ).first()
        db.session.rollback()  # a fresh snapshot for the next look
        if seen is not None:
            return
        if time.monotonic() >= deadline:
            raise Problem(
                503,
                "Service Unavailable",
                "Your write is not in the read model yet; retry shortly.",
                headers={"Retry-After": "1"},
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
