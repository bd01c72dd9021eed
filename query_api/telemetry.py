"""Scrape-time gauges and readiness of the read side: dead letters, projection lag."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.registry import Collector
from sqlalchemy import Row, text
from sqlalchemy.exc import DBAPIError

from observability.metrics import CallbackCollector
from query_api.extensions import db

_NEWEST = text(
    "SELECT processed_at, extract(epoch FROM processed_at - occurred_at)"
    " FROM read_model.processed_events ORDER BY processed_at DESC LIMIT 1"
)


def projection_readiness() -> dict[str, object]:
    """Raises if the database is unreachable; otherwise reports how far behind the model is."""
    try:
        row = _newest()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        # A pooled connection the server dropped (no pre-ping on the read side): once more.
        row = _newest()
    if row is None:
        return {"database": "ok", "last_projected_at": None, "projection_lag_seconds": None}
    return {
        "database": "ok",
        "last_projected_at": row[0].isoformat(),
        "projection_lag_seconds": round(float(row[1]), 3),
    }


def _newest() -> Row[Any] | None:
    with db.engine.connect() as conn:
        return conn.execute(_NEWEST).first()


def read_side_collectors() -> Iterable[Collector]:
    def open_dead_letters() -> list[tuple[int]]:
        with db.engine.connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM dead_letters WHERE resolved_at IS NULL")).scalar()
        return [(int(count or 0),)]

    return (CallbackCollector("dead_letters_open", "Dead letters not yet resolved", [], open_dead_letters),)
