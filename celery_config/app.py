"""Celery application and its settings (the only place they are set)."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import setup_logging
from kombu import Exchange, Queue

from observability.logs import configure_logging
from observability.worker_metrics import enable_worker_metrics
from settings import load_settings

enable_worker_metrics()  # before the task modules import prometheus_client

OUTBOX_QUEUE = "outbox"
PROJECTIONS_QUEUE = "projections"
RELAY_TASK = "outbox.relay"
PURGE_TASK = "outbox.purge"
PROJECT_TASK = "projections.apply_events"

_settings = load_settings()

celery_app = Celery("cqrs_user_service", include=["outbox_relay.tasks", "query_api.tasks"])
celery_app.conf.update(
    broker_url=_settings.broker_url,
    broker_connection_retry_on_startup=True,
    # Workers keep reconnecting through a broker outage of any length (the default gives
    # up after 100 attempts, about 50 minutes, and the worker exits).
    broker_connection_max_retries=None,
    broker_connection_timeout=3,
    # Publisher confirms: apply_async returns only once RabbitMQ has the message.
    broker_transport_options={"confirm_publish": True},
    task_ignore_result=True,
    result_backend=None,
    task_serializer="json",
    accept_content=["json"],
    # A task is acknowledged only after it ran; a SIGKILLed pool process's task is
    # redelivered rather than acked (reject_on_worker_lost); one message at a time.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # A lost broker connection cancels running tasks: their messages come back anyway.
    worker_cancel_long_running_tasks_on_connection_loss=True,
    # Flower sees workers and task history only with these events on.
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_queues=[
        Queue(OUTBOX_QUEUE, Exchange(OUTBOX_QUEUE), routing_key=OUTBOX_QUEUE, durable=True),
        Queue(
            PROJECTIONS_QUEUE,
            Exchange(PROJECTIONS_QUEUE),
            routing_key=PROJECTIONS_QUEUE,
            durable=True,
        ),
    ],
    task_default_queue=OUTBOX_QUEUE,
    task_routes={
        "outbox.*": {"queue": OUTBOX_QUEUE, "routing_key": OUTBOX_QUEUE},
        "projections.*": {"queue": PROJECTIONS_QUEUE, "routing_key": PROJECTIONS_QUEUE},
    },
    beat_schedule={
        "relay-outbox": {
            "task": RELAY_TASK,
            "schedule": _settings.relay_interval_seconds,
            # A tick nobody ran in time is useless: the next one does the same work.
            "options": {"expires": max(_settings.relay_interval_seconds * 5, 5.0)},
        },
        "purge-published-outbox": {
            "task": PURGE_TASK,
            "schedule": 600.0,
            "options": {"expires": 600.0},
        },
    },
    beat_max_loop_interval=1,
    timezone="UTC",
    enable_utc=True,
)


@setup_logging.connect
def _json_logs(**_: object) -> None:
    # Replaces Celery's own logging setup: workers and beat log JSON lines like the rest.
    configure_logging(os.environ.get("SERVICE_NAME", "celery"))
