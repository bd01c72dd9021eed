"""Celery tasks of the relay (queue ``outbox``) and the post-commit kick."""

from __future__ import annotations

import logging
import os
import threading
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
        log.info(
            "relay: published %d events",
            result.published,
            extra={"published": result.published, "request_ids": sorted(set(result.request_ids))[:200]},
        )
    if result.more_pending:
        send_kick()  # keep draining without waiting for the next beat tick
    return {"published": result.published, "failed": result.failed, "locked_out": result.locked_out}


@celery_app.task(name=PURGE_TASK, ignore_result=True)
def purge_outbox_task() -> int:
    settings = load_settings()
    with _auth_app().app_context():
        from auth_api.extensions import db

        deleted = purge_published(db.engine, settings.outbox_retention_seconds)
    log.info("outbox purge: deleted %d published rows", deleted, extra={"deleted": deleted})
    return deleted


def send_kick() -> None:
    """Ask a relay worker to run now, in the calling thread. Best effort."""
    try:
        relay_outbox_task.apply_async(expires=10, retry=False)
    except Exception as exc:  # broker down must never fail a committed command
        log.warning("relay kick not sent: %s", exc)


class _Kicker:
    """Sends kicks from one background thread per process.

    With RabbitMQ down, kombu spends about 6 s on a refused connection before giving up, so a
    kick sent in the request path stalled every command for seconds (8 request threads gave
    about one registration a second). Here a command only sets a flag; kicks that arrive while
    one is being sent collapse into one more send, which still covers their commits because
    the relay reads whatever is unpublished when it runs.
    """

    def __init__(self) -> None:
        self._wanted = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def kick(self) -> None:
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            with self._lock:  # first kick in this process (or after a fork): start the sender
                if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                    self._wanted = threading.Event()
                    self._pid = os.getpid()
                    self._thread = threading.Thread(target=self._run, name="relay-kicker", daemon=True)
                    self._thread.start()
        self._wanted.set()

    def _run(self) -> None:
        wanted = self._wanted
        while True:
            wanted.wait()
            wanted.clear()  # cleared before sending: a kick set meanwhile triggers one more send
            send_kick()


_kicker = _Kicker()


def kick_relay() -> None:
    """Ask a relay worker to run now, without waiting for the broker (see ``_Kicker``).

    Best effort: beat runs the relay every second anyway."""
    _kicker.kick()
