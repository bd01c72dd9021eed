"""``python -m projector``: run the Kafka-to-Celery projector until SIGTERM or SIGINT.

Serves Prometheus metrics (consumer lag per partition, events handed over) on
``PROJECTOR_METRICS_PORT`` (9108; 0 turns it off).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading

from prometheus_client import start_http_server

from observability.logs import configure_logging
from observability.metrics import CONSUMER_LAG
from projector.consumer import build_projector
from settings import load_settings

log = logging.getLogger("projector")


def record_lag(stats_json: str) -> None:
    """librdkafka statistics callback: consumer lag of every assigned partition."""
    stats = json.loads(stats_json)
    for topic, detail in stats.get("topics", {}).items():
        for partition, numbers in detail.get("partitions", {}).items():
            lag = numbers.get("consumer_lag", -1)
            if partition != "-1" and lag >= 0:
                CONSUMER_LAG.labels(topic, partition).set(lag)


def main() -> int:
    configure_logging("projector")
    settings = load_settings()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if settings.projector_metrics_port:
        start_http_server(
            settings.projector_metrics_port, addr=os.environ.get("PROJECTOR_METRICS_ADDR", "127.0.0.1")
        )
    projector = build_projector(settings, **{"stats_cb": record_lag, "statistics.interval.ms": 2000})
    projector.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
