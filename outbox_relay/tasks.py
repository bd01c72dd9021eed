"""Celery tasks of the relay (queue ``outbox``) and the post-commit kick."""

from __future__ import annotations

import logging
from functools import cache

from celery.signals import worker_process_shutdown
from confluent_kafka import Producer
from flask import Flask
from sqlalchemy.exc import DBAPIError

from celery_config.app import PURGE_TASK, RELAY_TASK, celery_app
from outbox_relay.relay import kafka_producer, purge_published, relay_outbox
from settings import load_settings

log = logging.getLogger(__name__)
_producer: Producer | None = None


@cache
def _auth_app() -> Flask:
    from auth_api import create_app  # imported late: only relay processes need it

    return create_app({"RELAY_KICK": False})


def _get_producer() -> Producer:
    # Created in the process that uses it: librdkafka clients do not survive fork().
    global _producer
    if _producer is None:
        settings = load_settings()
        _producer = kafka_producer(settings.kafka_bootstrap, settings.relay_delivery_timeout_ms)
    return _producer


@worker_process_shutdown.connect
def _flush_producer(**_: object) -> None:
    if _producer is not None:
        _producer.flush(5)


@celery_app.task(name=RELAY_TASK, ignore_result=True)
def relay_outbox_task() -> dict[str, int | bool]:
    settings = load_settings()
    app = _auth_app()
    with app.app_context():
        from auth_api.extensions import db

        try:
            result = relay_outbox(
                db.engine,
                _get_producer(),
                settings.kafka_topic,
                batch_size=settings.relay_batch_size,
                max_seconds=settings.relay_max_seconds,
                delivery_timeout_s=settings.relay_delivery_timeout_ms / 1000 + 5,
            )
        except DBAPIError as exc:
            # The outbox keeps the rows; beat runs the relay again within a second.
            log.warning("relay: auth_db unavailable: %s", exc.__class__.__name__)
            return {"published": 0, "failed": 0}
    if result.published:
        log.info("relay: published %d events", result.published, extra={"published": result.published})
    if result.more_pending:
        kick_relay()  # keep draining without waiting for the next beat tick
    return {"published": result.published, "failed": result.failed, "locked_out": result.locked_out}


@celery_app.task(name=PURGE_TASK, ignore_result=True)
def purge_outbox_task() -> int:
    settings = load_settings()
    with _auth_app().app_context():
        from auth_api.extensions import db

        deleted = purge_published(db.engine, settings.outbox_retention_seconds)
    log.info("outbox purge: deleted %d published rows", deleted, extra={"deleted": deleted})
    return deleted


def kick_relay() -> None:
    """Ask a relay worker to run now. Best effort: beat covers a lost kick within a second."""
    try:
        relay_outbox_task.apply_async(expires=10, retry=False)
    except Exception as exc:  # broker down must never fail a committed command
        log.warning("relay kick not sent: %s", exc)
