"""The notifier: a second consumer of ``user-events`` that mails users as a reaction to events.

``python -m notifier`` (consumer group ``notifier``) hands event batches to Celery on queue
``notifications`` and commits offsets only once RabbitMQ confirmed them; notification
workers (``notifier.tasks``) turn each event into at most one mail per kind, claimed in
``notify_db`` by (event id, kind), so redelivery and replays send nothing twice.
"""
