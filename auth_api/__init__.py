"""The write side: registration and login commands, persisted with their events."""

from __future__ import annotations

from typing import Any

from flask import Flask

from auth_api.accounts import LockoutPolicy
from auth_api.extensions import db, jwt, migrate
from settings import ROOT, load_settings
from web.app_setup import ENGINE_OPTIONS, install_web_conventions
from web.jwt_setup import jwt_config, read_key
from web.observability import database_ready, install_observability


def create_app(config: dict[str, Any] | None = None) -> Flask:
    settings = load_settings()
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=settings.auth_database_url,
        SQLALCHEMY_ENGINE_OPTIONS=ENGINE_OPTIONS,
        # Test runs may pick a cheaper hash; production keeps werkzeug's default (scrypt).
        PASSWORD_HASH_METHOD=_env_hash_method(),
        RELAY_KICK=True,
        **jwt_config(
            read_key("JWT_PRIVATE_KEY", settings.jwt_private_key_file),
            read_key("JWT_PUBLIC_KEY", settings.jwt_public_key_file),
        ),
    )
    app.config.update(config or {})

    install_web_conventions(app, db, migrate, jwt, migrations=ROOT / "migrations" / "auth")

    app.extensions["lockout_policy"] = LockoutPolicy()
    app.extensions["relay_kick"] = _relay_kick(app.config["RELAY_KICK"])

    from auth_api import models  # noqa: F401  (tables known to Flask-Migrate)
    from auth_api.cli import register_cli
    from auth_api.routes import api, bp
    from auth_api.telemetry import outbox_collectors

    app.register_blueprint(bp)
    api.install(app)
    install_observability(
        app, "auth_api", readiness=lambda: database_ready(lambda: db.engine), collectors=outbox_collectors
    )
    register_cli(app)
    return app


def _env_hash_method() -> str:
    import os

    return os.environ.get("PASSWORD_HASH_METHOD", "scrypt")


def _relay_kick(enabled: bool) -> Any:
    if not enabled:
        return lambda: None
    from outbox_relay.tasks import kick_relay

    return kick_relay
