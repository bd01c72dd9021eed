"""Entry module of the Celery workers: ``celery -A celery_config.worker:<queue app> worker``.

Reads the settings once, builds the Celery app of each queue with that queue's task module
only (``relay``, ``projections``, ``notifications``; ``app`` has every task, for ``inspect``
and tools), and routes Celery's logging to JSON lines. A worker that loads only its own
code is smaller: the relay worker imports neither the read model nor SMTP (about 30 MiB),
the notification worker not the projection (about 17 MiB). Nothing here runs in the API or
projector processes.
"""

from __future__ import annotations

from celery.signals import setup_logging

from observability.worker_metrics import enable_worker_metrics
from settings import load_settings

settings = load_settings()
enable_worker_metrics(settings)  # before the task modules import prometheus_client

from celery_config.app import QUEUE_TASK_MODULES, make_celery  # noqa: E402
from celery_config.event_loop import WakeOnQueuedCallbacks  # noqa: E402
from observability.logs import configure_logging  # noqa: E402

relay = make_celery(settings, task_modules=QUEUE_TASK_MODULES["outbox"])
projections = make_celery(settings, task_modules=QUEUE_TASK_MODULES["projections"])
notifications = make_celery(settings, task_modules=QUEUE_TASK_MODULES["notifications"])
app = make_celery(settings, include_tasks=True)
for _app in (relay, projections, notifications, app):
    _app.steps["worker"].add(WakeOnQueuedCallbacks)


@setup_logging.connect
def _json_logs(**_: object) -> None:
    # Replaces Celery's own logging setup: workers and beat log JSON lines like the rest.
    configure_logging(settings.service_name, settings.log_level)
