"""Entry module of the Celery processes that run no task: ``celery -A celery_config.sender beat|flower``.

Beat sends tasks by name and Flower watches events: neither needs the task code, and leaving
it out (Kafka client, SQLAlchemy models, pydantic schemas) keeps each of them about 40 MiB
smaller. The configuration is the same one app (``make_celery``).
"""

from __future__ import annotations

from celery.signals import setup_logging

from celery_config.app import make_celery
from observability.logs import configure_logging
from settings import load_settings

settings = load_settings()
app = make_celery(settings)


@setup_logging.connect
def _json_logs(**_: object) -> None:
    configure_logging(settings.service_name, settings.log_level)
