"""Prometheus metrics of every process, in one place.

Gunicorn and Celery fork workers, so the client runs in multiprocess mode whenever
``PROMETHEUS_MULTIPROC_DIR`` is set (gunicorn.conf.py and the Celery signals set it): each
process writes its own files and a scrape merges them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# --- HTTP (both APIs) ---
HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered", ["service", "route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer a request",
    ["service", "route", "method"],
    buckets=LATENCY_BUCKETS,
)

# --- pipeline ---
EVENTS_RELAYED = Counter("outbox_events_relayed_total", "Outbox rows published to Kafka and marked")
RELAY_FAILURES = Counter("outbox_relay_delivery_failures_total", "Outbox rows Kafka did not acknowledge")
EVENTS_HANDED_OVER = Counter(
    "projector_events_handed_over_total", "Kafka records handed to Celery (confirmed)"
)
CONSUMER_LAG = Gauge(
    "projector_consumer_lag",
    "Records behind the end of the partition",
    ["topic", "partition"],
    multiprocess_mode="livemax",
)
EVENTS_PROJECTED = Counter("projection_events_total", "Events by outcome in the projection", ["outcome"])
PROJECTION_LAG = Histogram(
    "projection_lag_seconds", "From the event's time to its effect in the read model", buckets=LAG_BUCKETS
)


class CallbackCollector(Collector):
    """Gauges computed at scrape time (e.g. a SQL count), one sample set per callback."""

    def __init__(self, name: str, documentation: str, labels: list[str], read: Callable[[], Iterable[tuple]]):
        self.name, self.documentation, self.labels, self.read = name, documentation, labels, read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        try:
            for *label_values, value in self.read():
                family.add_metric([str(v) for v in label_values], float(value))
        except Exception:  # a scrape must not fail because the database is down
            return
        yield family


class _ThisProcess(Collector):
    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def render(extra: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """The text exposition of this process (or of all processes in multiprocess mode)."""
    registry = CollectorRegistry(auto_describe=False)  # a fresh one per scrape: no shared state
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST
