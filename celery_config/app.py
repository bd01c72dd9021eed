"""The Celery application factory: queues, routes, beat schedule, reliability settings.

One definition for every process kind: workers and beat build the app in
``celery_config.worker``; the write API and the projector build their own from the
settings they were handed, to send tasks by name without importing the task code.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from settings import Settings

OUTBOX_QUEUE = "outbox"
PROJECTIONS_QUEUE = "projections"
NOTIFICATIONS_QUEUE = "notifications"
RELAY_TASK = "outbox.relay"
PURGE_TASK = "outbox.purge"
# How long a hand-over publish may wait for the socket and for RabbitMQ's confirm.
PUBLISH_TIMEOUT_SECONDS = 10.0
PROJECT_TASK = "projections.apply_events"
NOTIFY_TASK = "notifications.send_mail"
# The task code of each queue: a worker loads only its own queue's (see celery_config.worker).
QUEUE_TASK_MODULES = {
    "outbox": ("outbox_relay.tasks",),
    "projections": ("projector.projection.tasks",),
    "notifications": ("notifier.tasks",),
}
TASK_MODULES = [module for modules in QUEUE_TASK_MODULES.values() for module in modules]


class ServiceCelery(Celery):
    """A Celery app that carries the process's settings to its tasks (``self.app.settings``)."""

    def __init__(self, settings: Settings, **kwargs: object) -> None:
        super().__init__("cqrs_user_service", **kwargs)  # type: ignore[arg-type]
        self.settings = settings


def _queue(name: str) -> Queue:
    return Queue(name, Exchange(name), routing_key=name, durable=True)


def make_celery(
    settings: Settings, *, include_tasks: bool = False, task_modules: tuple[str, ...] = ()
) -> ServiceCelery:
    """The app; with ``include_tasks`` every task module, else only ``task_modules`` (loaded
    when a worker starts)."""
    app = ServiceCelery(settings, include=TASK_MODULES if include_tasks else list(task_modules))
    app.conf.update(
        broker_url=settings.broker_url,
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
        task_queues=[_queue(OUTBOX_QUEUE), _queue(PROJECTIONS_QUEUE), _queue(NOTIFICATIONS_QUEUE)],
        task_default_queue=OUTBOX_QUEUE,
        task_routes={
            "outbox.*": {"queue": OUTBOX_QUEUE, "routing_key": OUTBOX_QUEUE},
            "projections.*": {"queue": PROJECTIONS_QUEUE, "routing_key": PROJECTIONS_QUEUE},
            "notifications.*": {"queue": NOTIFICATIONS_QUEUE, "routing_key": NOTIFICATIONS_QUEUE},
        },
        beat_schedule={
            "relay-outbox": {
                "task": RELAY_TASK,
                "schedule": settings.relay_interval_seconds,
                # A tick nobody ran in time is useless: the next one does the same work.
                "options": {"expires": max(settings.relay_interval_seconds * 5, 5.0)},
            },
            "purge-published-outbox": {
                "task": PURGE_TASK,
                "schedule": settings.outbox_purge_interval_seconds,
                "options": {"expires": settings.outbox_purge_interval_seconds},
            },
        },
        # Beat sleeps until its next tick; nothing else wakes it.
        beat_max_loop_interval=min(settings.relay_interval_seconds, 5.0),
        timezone="UTC",
        enable_utc=True,
    )
    return app
