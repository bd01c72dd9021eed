"""The projection task (queue ``projections``): a batch of events into ``query_db``."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime
from typing import Any

from celery import Task, shared_task

from celery_config.app import PROJECT_TASK
from celery_config.engines import worker_engine
from event_contract import Delivery
from event_contract.keystore import SqlDataKeys, master_keys
from observability.metrics import EVENTS_PROJECTED, PROJECTION_LAG
from projector.projection.apply import BatchReport, apply_or_split
from projector.projection.transient import is_transient

log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 30.0


def retry_delay(retries: int) -> float:
    """Exponential backoff with full jitter, capped: 0.5 s, 1 s, 2 s ... 30 s."""
    ceiling = min(MAX_BACKOFF_SECONDS, 0.5 * (2**retries))
    return random.uniform(ceiling / 2, ceiling)


@shared_task(name=PROJECT_TASK, bind=True, max_retries=None, ignore_result=True)
def apply_events_task(self: Task, deliveries: list[dict[str, Any]]) -> dict[str, int]:
    items = [Delivery.from_dict(item) for item in deliveries]
    settings = self.app.settings
    engine = worker_engine(settings.projection_database_url)
    try:
        # A key store per batch: a user erased since the last batch is unreadable in this one.
        keys = SqlDataKeys(
            worker_engine(settings.projection_keys_database_url),
            master_keys(settings.data_master_keys, settings.data_master_keys_file),
        )
        report = apply_or_split(engine, items, keys)
    except Exception as exc:
        # Events that break the contract or the database were dead-lettered inside
        # apply_or_split; what reaches here is the database being away, or a fault of
        # this code or its configuration. Either way the batch is retried (capped
        # backoff) rather than failed: a failed task is acked, and its events lost.
        delay = retry_delay(self.request.retries)
        transient = is_transient(exc)
        log.log(
            logging.WARNING if transient else logging.ERROR,
            "projection: %s, retry in %.1f s: %s",
            "transient database error" if transient else "unexpected error",
            delay,
            exc.__class__.__name__,
            exc_info=not transient,
            extra={"retries": self.request.retries, "events": len(items)},
        )
        # retry() publishes the new message (confirmed) before this one is acked.
        raise self.retry(countdown=delay, exc=exc) from exc
    _observe(report)
    log.info(
        "projection: applied %d, duplicates %d, dead-lettered %d",
        report.applied,
        report.duplicates,
        report.dead_lettered,
        extra={
            "request_ids": sorted({i.request_id for i in items if i.request_id}),
            "event_ids": [str(e.id) for e in report.applied_events][:50],
        },
    )
    return {"applied": report.applied, "duplicates": report.duplicates, "dead_lettered": report.dead_lettered}


def _observe(report: BatchReport) -> None:
    EVENTS_PROJECTED.labels("applied").inc(report.applied)
    EVENTS_PROJECTED.labels("duplicate").inc(report.duplicates)
    EVENTS_PROJECTED.labels("dead_lettered").inc(report.dead_lettered)
    now = datetime.now(UTC)
    for event in report.applied_events:
        PROJECTION_LAG.observe(max(0.0, (now - event.time).total_seconds()))
