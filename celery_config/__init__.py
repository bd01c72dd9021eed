"""The one Celery app of the system: queues, routes, beat schedule, reliability settings.

Run a worker per queue so each scales on its own:
    celery -A celery_config worker -Q outbox       # the relay
    celery -A celery_config worker -Q projections  # the projection workers
    celery -A celery_config beat                   # exactly one
"""

from celery_config.app import celery_app

__all__ = ["celery_app"]
