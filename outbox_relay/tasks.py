"""Celery tasks of the relay (queue ``outbox``): publish the outbox, purge what is published.

Run by beat every ``RELAY_INTERVAL_SECONDS`` (5 s while commands kick it, else 1 s) and
kicked by name (``outbox.relay``) after each command. A worker gets an engine for
``auth_db`` and a Kafka producer, nothing of the write API.
"""

from __future__ import annotations

import logging
import os
import random
import time

from celery import Task, shared_task
from celery.signals import worker_process_shutdown
from confluent_kafka import Producer
from sqlalchemy.exc import DBAPIError

from celery_config.app import PURGE_TASK, RELAY_TASK
from celery_config.engines import worker_engine
from outbox_relay.relay import kafka_producer, purge_published, relay_shards
from settings import Settings

log = logging.getLogger(__name__)
_producers: dict[int, Producer] = {}
# pid -> wall-clock time at which this process's last complete relay run started reading.
_last_complete_run: dict[int, float] = {}
# Kicks come from other processes, maybe other hosts: a kick sent this close before a run's
# start is not taken as covered by it (clock skew); it runs.
KICK_CLOCK_MARGIN_S = 0.01
# A kicked run that met another relay's shard lock runs again after 50, 100, 150 ms (a relay
# run takes milliseconds); past that, a stalled holder loses its lock and beat runs the relay.
KICK_RETRIES = 3
KICK_RETRY_DELAY_S = 0.05


def _producer(settings: Settings) -> Producer:
    # Created in the process that uses it: librdkafka clients do not survive fork().
    pid = os.getpid()
    if pid not in _producers:
        _producers[pid] = kafka_producer(
            settings.kafka_bootstrap,
            settings.relay_delivery_timeout_ms,
            **{"linger.ms": settings.relay_linger_ms},
        )
    return _producers[pid]


@worker_process_shutdown.connect
def _flush_producer(**_: object) -> None:
    producer = _producers.get(os.getpid())
    if producer is not None:
        producer.flush(5)


def relay_kafka_wait_seconds(settings: Settings) -> float:
    """How long a batch waits for Kafka's reports: past librdkafka's own message timeout (so
    every message has its report), and below the lock timeout (so a relay waiting on a slow
    Kafka is not mistaken for a stalled one)."""
    wait = settings.relay_delivery_timeout_ms / 1000 + 2
    if wait >= settings.relay_lock_timeout_seconds:
        raise ValueError(
            f"RELAY_LOCK_TIMEOUT_SECONDS ({settings.relay_lock_timeout_seconds}) must exceed"
            f" RELAY_DELIVERY_TIMEOUT_MS / 1000 + 2 ({wait})"
        )
    return wait


@shared_task(name=RELAY_TASK, bind=True, ignore_result=True)
def relay_outbox_task(
    self: Task, kicked_at: float | None = None, attempt: int = 0
) -> dict[str, int | bool]:
    """One relay run. ``kicked_at`` (a command's kick): when it was sent, after its commits.

    A burst of commands sends kicks faster than runs end; they queue up behind the running
    relay. A kick sent before the start of this process's last complete run (one that held
    every shard's lock, published every row it read and left none pending) is covered by that
    run: every commit before the kick was visible to it. Such kicks are acknowledged without a
    run, so a burst costs about one run per run's duration rather than one per command.

    A kicked run that found a shard held by another relay asks again shortly (``attempt``),
    with the same ``kicked_at``: the holder may have read that shard before the kicked commit.
    """
    settings: Settings = self.app.settings
    last = _last_complete_run.get(os.getpid())
    if kicked_at is not None and last is not None and kicked_at < last - KICK_CLOCK_MARGIN_S:
        return {"published": 0, "failed": 0, "covered": True}
    started = time.time()
    try:
        # Each run starts at a random shard: concurrent runs (relay workers, pool processes)
        # take different shards' locks and publish in parallel.
        result = relay_shards(
            worker_engine(settings.relay_database_url),
            _producer(settings),
            settings.kafka_topic,
            shards=settings.relay_shards,
            first=random.randrange(settings.relay_shards),
            batch_size=settings.relay_batch_size,
            max_seconds=settings.relay_max_seconds,
            delivery_timeout_s=relay_kafka_wait_seconds(settings),
            lock_timeout_s=settings.relay_lock_timeout_seconds,
        )
    except DBAPIError as exc:
        # The outbox keeps the rows; the next kick or beat tick runs the relay again.
        log.warning("relay: auth_db unavailable: %s", exc.__class__.__name__)
        return {"published": 0, "failed": 0}
    if result.covered_everything:
        _last_complete_run[os.getpid()] = started
    if result.published:
        log.info(
            "relay: published %d events",
            result.published,
            extra={"published": result.published, "request_ids": sorted(set(result.request_ids))[:200]},
        )
    if result.more_pending:
        # Keep draining without waiting for the next beat tick.
        _follow_up(self)
    elif kicked_at is not None and (result.locked_out or result.skipped_shards) and attempt < KICK_RETRIES:
        # The kick's commit may be in a shard another relay had already read: once that relay
        # is done, run again (a complete run started after the kick makes this one covered).
        _follow_up(
            self,
            kwargs={"kicked_at": kicked_at, "attempt": attempt + 1},
            countdown=KICK_RETRY_DELAY_S * (attempt + 1),
        )
    return {"published": result.published, "failed": result.failed, "locked_out": result.locked_out}


def _follow_up(task: Task, **options: object) -> None:
    try:
        task.apply_async(expires=10, retry=False, **options)
    except Exception as exc:  # beat runs the relay anyway
        log.warning("relay: follow-up not sent: %s", exc)


@shared_task(name=PURGE_TASK, bind=True, ignore_result=True)
def purge_outbox_task(self: Task) -> int:
    settings: Settings = self.app.settings
    deleted = purge_published(worker_engine(settings.relay_database_url), settings.outbox_retention_seconds)
    log.info("outbox purge: deleted %d published rows", deleted, extra={"deleted": deleted})
    return deleted
