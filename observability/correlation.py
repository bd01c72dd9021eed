"""The correlation (request) id of the work in progress, carried across processes.

HTTP takes it from ``X-Request-ID``; the outbox row, the Kafka headers and the Celery
task headers carry it on, so one id finds the whole path of one request in the logs.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def sanitize_request_id(candidate: str | None) -> str:
    """Keep a caller's id if it is safe to log and echo; otherwise make a new one."""
    if candidate and _ACCEPTABLE.match(candidate):
        return candidate
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return request_id_var.get()
