"""The pipeline's first half: publishes committed outbox rows of ``auth_db`` to Kafka."""
