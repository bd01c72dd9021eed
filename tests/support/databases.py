"""Throw-away databases, migrated from the project's own migrations."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg2
from flask import Flask
from sqlalchemy.engine import make_url


def _admin(url: str) -> psycopg2.extensions.connection:
    parsed = make_url(url)
    conn = psycopg2.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password, dbname="postgres"
    )
    conn.autocommit = True
    return conn


@contextmanager
def scratch_database(base_url: str, factory: Callable[[dict], Flask], prefix: str) -> Iterator[Flask]:
    """A new database for one test (an app bound to it), dropped afterwards.

    ``factory(config)`` builds the app; the config points it at the new database."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    admin = _admin(base_url)
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
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
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
