"""The notifier's Prometheus metrics (consumer and workers).

Made on import: a notification worker imports this after ``enable_worker_metrics`` (through
the task module), so its pool processes write them to files that its main process serves.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS_HANDED_OVER = Counter(
    "notifier_events_handed_over_total", "Kafka records handed to the notification workers (confirmed)"
)
CONSUMER_LAG = Gauge(
    "notifier_consumer_lag",
    "Records behind the end of the partition (consumer group notifier)",
    ["topic", "partition"],
    multiprocess_mode="livemax",
)
MAILS = Counter(
    "notifications_total",
    "Mails by kind and outcome (sent, duplicate, expired, rejected)",
    ["kind", "outcome"],
)
