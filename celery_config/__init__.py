"""The one Celery configuration of the system (``app.make_celery``); workers start from
``celery_config.worker``, one command per queue, so each scales on its own:

    celery -A celery_config.worker:relay worker -Q outbox                 # the relay
    celery -A celery_config.worker:projections worker -Q projections      # the projection workers
    celery -A celery_config.worker:notifications worker -Q notifications  # the mail workers
    celery -A celery_config.sender beat                                   # exactly one
"""
