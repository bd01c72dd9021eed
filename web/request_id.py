"""Per-request correlation id: read from or returned in ``X-Request-ID``."""

from __future__ import annotations

from flask import Flask, Response, g, request

from observability.correlation import request_id_var, sanitize_request_id

HEADER = "X-Request-ID"


def install_request_id(app: Flask) -> None:
    @app.before_request
    def _bind() -> None:
        g.request_id = sanitize_request_id(request.headers.get(HEADER))
        g.request_id_token = request_id_var.set(g.request_id)

    @app.after_request
    def _echo(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id:
            response.headers[HEADER] = request_id
        return response

    @app.teardown_request
    def _unbind(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            request_id_var.reset(token)
