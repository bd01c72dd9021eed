"""``python -m notifier``: hand events to the notification workers until SIGTERM or SIGINT.

Consumer group NOTIFIER_GROUP_ID (``notifier``) on KAFKA_TOPIC; metrics (consumer lag, events
handed over) on NOTIFIER_METRICS_PORT.
"""

from __future__ import annotations

import json
import signal
import threading

from observability.logs import configure_logging
from observability.watchdog import LoopWatchdog
from settings import load_settings


def main() -> None:
    from prometheus_client import start_http_server

    from notifier.handoff import build_notifier
    from notifier.metrics import CONSUMER_LAG

    settings = load_settings()
    configure_logging(settings.service_name, settings.log_level)

    def record_lag(stats_json: str) -> None:
        """librdkafka statistics callback: consumer lag of every assigned partition."""
        for topic, detail in json.loads(stats_json).get("topics", {}).items():
            for partition, numbers in detail.get("partitions", {}).items():
                lag = numbers.get("consumer_lag", -1)
                if partition != "-1" and lag >= 0:
                    CONSUMER_LAG.labels(topic, partition).set(lag)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if settings.notifier_metrics_port:
        start_http_server(settings.notifier_metrics_port, addr=settings.metrics_address)
    notifier = build_notifier(settings, **{"stats_cb": record_lag, "statistics.interval.ms": 5000})
    watchdog = LoopWatchdog("notifier", settings.consumer_stall_seconds)
    notifier.beat = watchdog.beat
    watchdog.start()
    notifier.run(stop)


if __name__ == "__main__":
    main()
