"""The write side: commands that change accounts, persisted with their events (outbox)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from auth_api.extensions import db, jwt
from settings import ROOT, Settings, load_settings
from web.app_setup import ENGINE_OPTIONS, install_web_conventions
from web.jwt_setup import WRITE_API, jwt_config
from web.observability import database_ready, install_observability


def create_app(
    settings: Settings | None = None, config: dict[str, Any] | None = None, *, migrations: bool = True
) -> Flask:
    """The write API. Without settings (``flask --app auth_api``), they are read from the environment."""
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=settings.auth_database_url,
        SQLALCHEMY_ENGINE_OPTIONS=ENGINE_OPTIONS,
        **jwt_config(settings, signing=True, audience=WRITE_API),
        CONSISTENCY_TOKEN_TTL=settings.consistency_token_ttl,
    )
    app.config.update(config or {})

    install_web_conventions(
        app, settings, db, jwt, migrations=ROOT / "migrations" / "auth" if migrations else None
    )

    from auth_api import models  # noqa: F401  (tables known to Flask-Migrate)
    from auth_api.bootstrap import build_write_side
    from auth_api.cli import register_cli
    from auth_api.rate_limits import install_rate_limits
    from auth_api.routes import api, bp
    from auth_api.telemetry import outbox_collectors

    app.extensions["write_side"] = build_write_side(settings)
    install_rate_limits(app, settings)
    app.register_blueprint(bp)
    api.install(app)
    install_observability(
        app, "auth_api", readiness=lambda: database_ready(lambda: db.engine), collectors=outbox_collectors
    )
    register_cli(app)
    return app
