"""Scrape-time gauges of the write side: the outbox backlog."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.registry import Collector
from sqlalchemy import text

from auth_api.extensions import db
from observability.metrics import CallbackCollector


def _backlog() -> tuple[int, float]:
    with db.engine.connect() as conn:
        count, age = conn.execute(
            text(
                "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)"
                " FROM outbox WHERE published_at IS NULL"
            )
        ).one()
    return int(count), float(age)


def outbox_collectors() -> Iterable[Collector]:
    backlog: dict[str, tuple[int, float]] = {}

    def read() -> tuple[int, float]:
        if "value" not in backlog:  # one query for both gauges
            backlog["value"] = _backlog()
        return backlog["value"]

    return (
        CallbackCollector(
            "outbox_unpublished_rows", "Outbox rows not yet published to Kafka", [], lambda: [(read()[0],)]
        ),
        CallbackCollector(
            "outbox_oldest_unpublished_age_seconds",
            "Age of the oldest unpublished outbox row",
            [],
            lambda: [(read()[1],)],
        ),
    )
