"""Throw-away databases, migrated from the project's own migrations."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flask import Flask
from sqlalchemy.engine import make_url

from settings import ROOT


def _superuser(sql: str) -> None:
    # The roles of the system may not create databases: the superuser does, over the unix socket.
    subprocess.run(
        ["bash", str(ROOT / "services" / "postgres.sh"), "psql", "-d", "postgres", "-c", sql],
        check=True,
        capture_output=True,
        timeout=60,
    )


@contextmanager
def scratch_database(base_url: str, factory: Callable[[dict], Flask], prefix: str) -> Iterator[Flask]:
    """A new database for one test (an app bound to it), owned by ``base_url``'s role, dropped
    afterwards.

    ``factory(config)`` builds the app; the config points it at the new database."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    parsed = make_url(base_url)
    url = parsed.set(database=name).render_as_string(hide_password=False)
    _superuser(f'CREATE DATABASE "{name}" OWNER "{parsed.username}"')
    try:
        from flask_migrate import upgrade

        app = factory({"SQLALCHEMY_DATABASE_URI": url, "TESTING": True})
        with app.app_context():
            upgrade()
        yield app
        from auth_api.extensions import db as auth_db
        from query_api.extensions import db as query_db

        with app.app_context():
            for db in (auth_db, query_db):
                if app in getattr(db, "_app_engines", {}):
                    db.engine.dispose()
    finally:
        _superuser(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
