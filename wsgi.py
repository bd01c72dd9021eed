"""Gunicorn entry points, one app per process: ``gunicorn wsgi:auth_app`` or ``wsgi:query_app``.

Each name is built on first access, so a read API process never builds the write API (and
never reads the private signing key), and the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from settings import load_settings


def _auth_app() -> Flask:
    from auth_api import create_app

    return create_app(_settings(), migrations=False)


def _query_app() -> Flask:
    from query_api import create_app

    return create_app(_settings(), migrations=False)


def _settings() -> Any:
    from observability.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.service_name, settings.log_level)
    return settings


_FACTORIES: dict[str, Callable[[], Flask]] = {"auth_app": _auth_app, "query_app": _query_app}
_built: dict[str, Flask] = {}


def __getattr__(name: str) -> Flask:
    if name not in _FACTORIES:
        raise AttributeError(f"module 'wsgi' has no attribute {name!r}")
    if name not in _built:
        _built[name] = _FACTORIES[name]()
    return _built[name]
