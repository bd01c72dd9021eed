"""What both Flask apps install the same way: problems, request ids, JSON, headers."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response
from flask_jwt_extended import JWTManager
from flask_sqlalchemy import SQLAlchemy

from settings import Settings
from web.jwt_setup import install_jwt_problems
from web.problems import register_problem_handlers
from web.request_id import install_request_id

MAX_BODY_BYTES = 64 * 1024
# A dead database must fail a request (or a readiness probe) in seconds, not hang it.
ENGINE_OPTIONS = {
    "pool_pre_ping": True,
    "pool_size": 10,
    "max_overflow": 10,
    "connect_args": {"connect_timeout": 3},
}
# The read API in autocommit: under READ COMMITTED every statement took its own snapshot
# anyway, so the BEGIN and ROLLBACK round trips around a read bought nothing (an export asks
# for one REPEATABLE READ snapshot itself); nor a pre-ping before each checkout. Together they
# were most of a read's time. A read that meets a connection the server dropped runs again
# once on a fresh one (query_api.routes), since the pool then discards all it held; TCP
# keepalives make a connection whose peer vanished fail instead of hanging a request.
READ_ENGINE_OPTIONS = {
    **ENGINE_OPTIONS,
    "pool_pre_ping": False,
    "isolation_level": "AUTOCOMMIT",
    "connect_args": {
        "connect_timeout": 3,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
    },
}


def install_web_conventions(
    app: Flask, settings: Settings, db: SQLAlchemy, jwt: JWTManager, *, migrations: Path | None
) -> None:
    """Bind the app's extensions and install what both APIs do alike."""
    db.init_app(app)
    if migrations is not None:  # `flask db ...` only: alembic and mako stay out of served apps
        from flask_migrate import Migrate

        Migrate(app, db, directory=str(migrations))
    jwt.init_app(app)
    install_jwt_problems(jwt)
    if app.config.get("MAX_CONTENT_LENGTH") is None:  # Flask's default is None: unbounded
        app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    register_problem_handlers(app)
    install_request_id(app)
    if settings.cors_origins:  # CORS is off unless origins are configured
        from flask_cors import CORS

        CORS(app, origins=list(settings.cors_origins), expose_headers=["Link", "X-Request-ID", "Retry-After"])

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("Cache-Control", "no-store")
        return response
