"""The pipeline's second half: consumes ``user-events`` and hands batches to Celery."""
