"""The read side: serves the projected read model from ``query_db`` only."""

from __future__ import annotations

from typing import Any

from flask import Flask

from query_api.extensions import db, jwt, migrate
from settings import ROOT, load_settings
from web.app_setup import ENGINE_OPTIONS, install_web_conventions
from web.jwt_setup import jwt_config, read_key
from web.observability import install_observability


def create_app(config: dict[str, Any] | None = None) -> Flask:
    settings = load_settings()
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=settings.query_database_url,
        SQLALCHEMY_ENGINE_OPTIONS=ENGINE_OPTIONS,
        # The read side verifies tokens only: it never holds the private key.
        **jwt_config(None, read_key("JWT_PUBLIC_KEY", settings.jwt_public_key_file)),
        CONSISTENCY_WAIT_SECONDS=2.0,
    )
    app.config.update(config or {})

    install_web_conventions(app, db, migrate, jwt, migrations=ROOT / "migrations" / "query")

    from query_api import models  # noqa: F401  (tables known to Flask-Migrate)
    from query_api.cli import register_cli
    from query_api.routes import api, bp
    from query_api.telemetry import projection_readiness, read_side_collectors

    app.register_blueprint(bp)
    api.install(app)
    install_observability(app, "query_api", readiness=projection_readiness, collectors=read_side_collectors)
    register_cli(app)
    return app
