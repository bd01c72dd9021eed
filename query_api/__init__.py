"""The read side, HTTP only: serves the read model from ``query_db``; never holds the signing key."""

from __future__ import annotations

from typing import Any

from flask import Flask

from query_api.extensions import db, jwt
from settings import ROOT, Settings, load_settings
from web.app_setup import ENGINE_OPTIONS, READ_ENGINE_OPTIONS, install_web_conventions
from web.jwt_setup import READ_API, jwt_config
from web.observability import install_observability


def create_app(
    settings: Settings | None = None, config: dict[str, Any] | None = None, *, migrations: bool = True
) -> Flask:
    """The read API. Without settings (``flask --app query_api``), they are read from the environment."""
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=settings.query_database_url,
        SQLALCHEMY_ENGINE_OPTIONS=READ_ENGINE_OPTIONS,
        # Verifies tokens with the public key only: the private key file is never opened.
        **jwt_config(settings, signing=False, audience=READ_API),
        CONSISTENCY_WAIT_SECONDS=settings.consistency_wait_seconds,
        CONSISTENCY_MAX_WAITS=settings.consistency_max_waits,
    )
    app.config.update(config or {})

    install_web_conventions(
        app, settings, db, jwt, migrations=ROOT / "migrations" / "query" if migrations else None
    )

    from query_api.routes import api, bp
    from query_api.telemetry import projection_readiness, read_side_collectors

    app.register_blueprint(bp)
    api.install(app)
    install_observability(app, "query_api", readiness=projection_readiness, collectors=read_side_collectors)
    return app


def create_migration_app(settings: Settings | None = None) -> Flask:
    """The read API's app bound to query_db's owner, for its migrations only.

    ``flask --app 'query_api:create_migration_app()' db upgrade``: the role the read API
    serves with may only SELECT, so it cannot create or alter tables."""
    settings = settings or load_settings()
    # Transactional DDL: a migration that fails half-way leaves nothing behind (no autocommit).
    owner = {
        "SQLALCHEMY_DATABASE_URI": settings.projection_database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": ENGINE_OPTIONS,
    }
    return create_app(settings, owner)
