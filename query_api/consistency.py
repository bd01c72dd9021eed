"""Read-your-writes: ``X-Consistency-Token: <event id>`` waits until that event is projected,
and every earlier event of the same user with it.

Projection workers apply batches in parallel, so a user's login can be applied before the
registration that precedes it; "the token's event is applied" alone would then answer 404
to the user who just registered. The token's event records its user and sequence, and the
wait ends once the user's sequences 1..N are all applied.
"""

from __future__ import annotations

import time
import uuid

from flask import current_app, request
from sqlalchemy import text

from query_api.extensions import db
from web.problems import Problem

# NULL: not applied yet; false: applied, an earlier event of its user not yet; true: done.
# Events projected before sequences were recorded (user_id NULL) count as done.
_CAUGHT_UP = text(
    "SELECT pe.user_id IS NULL OR ("
    " SELECT count(DISTINCT p.sequence) FROM read_model.processed_events p"
    " WHERE p.user_id = pe.user_id AND p.sequence <= pe.sequence) >= pe.sequence"
    " FROM read_model.processed_events pe WHERE pe.event_id = :event_id"
)

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
        caught_up = db.session.execute(_CAUGHT_UP, {"event_id": event_id}).scalar()
        db.session.rollback()  # a fresh snapshot for the next look
        if caught_up:
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
