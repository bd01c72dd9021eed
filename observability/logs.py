"""One JSON object per log line, with the service name and the correlation id."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from observability.correlation import current_request_id

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route every logger to stderr as JSON lines at ``level`` and above."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter that drowns the events worth reading.
    # "Task received/succeeded" lines carry whole batches of events, and beat and an idle relay
    # would log every second: the tasks log what they did themselves, with request ids.
    for noisy in ("kombu", "amqp", "urllib3", "celery.worker.strategy", "celery.app.trace", "celery.beat"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
