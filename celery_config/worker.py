"""Entry module of the Celery processes: ``celery -A celery_config.worker worker|beat|flower``.

Reads the settings once, builds the one Celery app with the task modules, and routes
Celery's logging to JSON lines. Nothing here runs in the API or projector processes.
"""

from __future__ import annotations

from celery.signals import setup_logging

from observability.worker_metrics import enable_worker_metrics
from settings import load_settings

settings = load_settings()
enable_worker_metrics(settings)  # before the task modules import prometheus_client

from celery_config.app import make_celery  # noqa: E402
from observability.logs import configure_logging  # noqa: E402

app = make_celery(settings, include_tasks=True)


@setup_logging.connect
def _json_logs(**_: object) -> None:
    # Replaces Celery's own logging setup: workers and beat log JSON lines like the rest.
    configure_logging(settings.service_name, settings.log_level)
