"""The pipeline's second half: Kafka → Celery hand-off (``handoff``), and the projection
that applies events to the read model (``projection``: batch apply, folds, dead letters,
rebuild, the Celery task). Loads no web framework."""
