"""The one Celery configuration of the system (``app.make_celery``); workers start from
``celery_config.worker``, one command per queue, so each scales on its own:

    celery -A celery_config.worker worker -Q outbox       # the relay
    celery -A celery_config.worker worker -Q projections  # the projection workers
    celery -A celery_config.worker worker -Q notifications  # the notification (mail) workers
    celery -A celery_config.worker beat                   # exactly one
"""
