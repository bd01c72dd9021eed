"""Per-request metrics and access logs, ``/metrics`` and ``/ready`` for both APIs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from flask import Flask, Response, g, jsonify, request
from prometheus_client.registry import Collector
from sqlalchemy import text

from observability.metrics import HTTP_LATENCY, HTTP_REQUESTS, render

access_log = logging.getLogger("access")


def install_observability(
    app: Flask,
    service: str,
    *,
    readiness: Callable[[], dict[str, object]],
    collectors: Callable[[], Iterable[Collector]] = lambda: (),
) -> None:
    @app.before_request
    def _start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("started")
        if started is None:
            return response
        elapsed = time.perf_counter() - started
        # The route template, not the path: user ids must not explode the label set.
        route = request.url_rule.rule if request.url_rule else "<unmatched>"
        HTTP_REQUESTS.labels(service, route, request.method, str(response.status_code)).inc()
        HTTP_LATENCY.labels(service, route, request.method).observe(elapsed)
        if route not in ("/metrics", "/health", "/ready"):
            access_log.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={"status": response.status_code, "ms": round(elapsed * 1000, 2), "route": route},
            )
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        body, content_type = render(collectors())
        return Response(body, content_type=content_type)

    @app.get("/ready")
    def ready() -> tuple[Response, int]:
        try:
            details = readiness()
        except Exception as exc:  # any failed dependency means "not ready", never a 500
            return jsonify(status="unavailable", error=exc.__class__.__name__), 503
        return jsonify(status="ready", **details), 200


def database_ready(engine_getter: Callable[[], object]) -> dict[str, object]:
    with engine_getter().connect() as conn:  # type: ignore[attr-defined]
        conn.execute(text("SELECT 1"))
    return {"database": "ok"}
