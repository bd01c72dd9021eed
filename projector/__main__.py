"""``python -m projector``: run the Kafka-to-Celery projector until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import sys
import threading

from observability.logs import configure_logging
from projector.consumer import build_projector


def main() -> int:
    configure_logging("projector")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    projector = build_projector()
    projector.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
