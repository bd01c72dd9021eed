"""Least privilege, tried for real: each process kind's role attempts what it must not do.

Every attempt runs against the session's PostgreSQL and RabbitMQ with the role the process
kind connects with (the same URLs the Procfile's processes get), and must fail with a
permission error, while what the role is for still works.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace

import psycopg2
import pytest
from kombu import Connection
from psycopg2 import errors
from sqlalchemy.engine import make_url

from projector.projection import rebuild
from settings import ROOT
from tests.support import environment
from tests.support.environment import TEST_SETTINGS

pytestmark = pytest.mark.usefixtures("test_databases")


def _connect(url: str, database: str | None = None) -> psycopg2.extensions.connection:
    parsed = make_url(url)
    return psycopg2.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        dbname=database or parsed.database,
        connect_timeout=5,
    )


def _refused(url: str, statement: str, database: str | None = None) -> None:
    conn = _connect(url, database)
    try:
        with conn.cursor() as cur, pytest.raises(errors.InsufficientPrivilege):
            cur.execute(statement)
    finally:
        conn.rollback()
        conn.close()


def _allowed(url: str, statement: str) -> None:
    conn = _connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.rollback()  # an allowed write is tried, never kept
        conn.close()


READER = TEST_SETTINGS.query_database_url
RELAY = TEST_SETTINGS.relay_database_url
PROJECTION = TEST_SETTINGS.projection_database_url
AUTH = TEST_SETTINGS.auth_database_url
NOTIFIER = TEST_SETTINGS.notifier_database_url


def test_each_process_kind_has_a_role_of_its_own():
    users = {make_url(url).username for url in (READER, RELAY, PROJECTION, AUTH, NOTIFIER)}
    assert users == set(environment.ROLES.values())


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO read_model.users (id) VALUES (gen_random_uuid())",
        "UPDATE read_model.users SET login_count = login_count + 1",
        "DELETE FROM read_model.processed_events",
        "UPDATE dead_letters SET resolved_at = now()",
        "TRUNCATE read_model.login_history",
        "CREATE TABLE read_model.mine (id int)",
        "CREATE TABLE public.mine (id int)",
        "CREATE TEMP TABLE mine (id int)",
    ],
)
def test_the_read_api_role_cannot_write(statement):
    _refused(READER, statement)


def test_the_read_api_role_reads_the_read_model():
    for table in (
        "read_model.users",
        "read_model.login_history",
        "read_model.processed_events",
        "dead_letters",
    ):
        _allowed(READER, f"SELECT count(*) FROM {table}")


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT count(*) FROM users",
        "UPDATE users SET roles = '{admin}'",
        "INSERT INTO outbox (event_id, user_id, event_type, payload)"
        " VALUES (gen_random_uuid(), gen_random_uuid(), 'UserRoleGranted', 'x')",
        "UPDATE outbox SET payload = 'x'",
    ],
)
def test_the_relay_role_only_reads_and_marks_the_outbox(statement):
    _refused(RELAY, statement)


def test_the_relay_role_does_what_the_relay_runs():
    _allowed(RELAY, "SELECT id, user_id, payload, headers, event_type FROM outbox WHERE published_at IS NULL")
    _allowed(RELAY, "UPDATE outbox SET published_at = now() WHERE id = -1")
    _allowed(RELAY, "DELETE FROM outbox WHERE published_at < now() - interval '7 days'")


@pytest.mark.parametrize(
    ("url", "foreign"),
    [
        (READER, TEST_SETTINGS.auth_database_url),
        (RELAY, TEST_SETTINGS.query_database_url),
        # The notifier's record of what it mailed is its own, and it sees nothing else (in auth_db
        # it reads only the data keys: tested below).
        (NOTIFIER, TEST_SETTINGS.query_database_url),
        (READER, NOTIFIER),
        (RELAY, NOTIFIER),
        (PROJECTION, NOTIFIER),
        (AUTH, NOTIFIER),
    ],
)
def test_a_role_cannot_connect_to_the_other_database(url, foreign):
    with pytest.raises(psycopg2.OperationalError, match="permission denied"):
        _connect(url, make_url(foreign).database).close()


KEYS = TEST_SETTINGS.projection_keys_database_url


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT count(*) FROM users",
        "SELECT count(*) FROM outbox",
        "SELECT count(*) FROM sessions",
        "DELETE FROM data_keys",
        "UPDATE data_keys SET wrapped = wrapped",
        "INSERT INTO data_keys VALUES (gen_random_uuid(), gen_random_uuid(), 'x', 'x')",
    ],
)
def test_the_projection_role_only_reads_the_data_keys_in_the_write_database(statement):
    _refused(KEYS, statement)


def test_the_projection_role_reads_the_data_keys():
    _allowed(KEYS, "SELECT user_id, key_id, master_key_id, wrapped FROM data_keys LIMIT 1")


@pytest.fixture
def scratch_query_database() -> Iterator[str]:
    """A query database of its own, set up like the session's: owner role, reader grants."""
    name = f"privileges_{uuid.uuid4().hex[:8]}"
    env = environment.child_env(QUERY_DB_NAME=name)
    setup = ["bash", str(ROOT / "services" / "postgres.sh"), "setup"]
    subprocess.run(setup, env=env, check=True, capture_output=True)
    try:
        from flask_migrate import upgrade

        from query_api import create_migration_app

        owner_url = make_url(PROJECTION).set(database=name).render_as_string(hide_password=False)
        app = create_migration_app(replace(TEST_SETTINGS, projection_database_url=owner_url))
        with app.app_context():
            upgrade()
            from query_api.extensions import db

            db.engine.dispose()
        subprocess.run(setup, env=env, check=True, capture_output=True)
        yield name
    finally:
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        subprocess.run(
            ["bash", str(ROOT / "services" / "postgres.sh"), "psql", "-d", "postgres", "-c", drop],
            check=True,
            capture_output=True,
        )


def test_after_a_rebuild_swap_the_reader_still_reads_and_still_cannot_write(scratch_query_database):
    """The rebuild, as the projection role, creates read_model_next and renames schemas; the
    swapped-in schema and tables are the reader's to SELECT from (default privileges), no more."""
    from sqlalchemy import create_engine, text

    name = scratch_query_database
    owner = create_engine(make_url(PROJECTION).set(database=name))
    try:
        rebuild._create_next_schema(owner)
        with owner.begin() as conn:
            conn.execute(text("INSERT INTO read_model_next.users (id) VALUES (gen_random_uuid())"))
        rebuild._swap(owner)
        with owner.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {rebuild.READ_MODEL_SCHEMA}_old CASCADE"))
    finally:
        owner.dispose()
    reader = _connect(READER, name)
    try:
        with reader.cursor() as cur:
            cur.execute("SELECT count(*) FROM read_model.users")
            assert cur.fetchone() == (1,)  # the rebuilt table, not the old one
    finally:
        reader.close()
    _refused(READER, "DELETE FROM read_model.users", database=name)


@pytest.mark.usefixtures("broker_vhost")
def test_the_broker_refuses_guest_and_takes_the_projects_user():
    url = make_url(TEST_SETTINGS.broker_url.replace("amqp://", "postgresql://"))  # parses user and host
    assert url.username == environment.ROLE_PREFIX and url.username != "guest"
    with Connection(TEST_SETTINGS.broker_url, connect_timeout=5) as conn:
        conn.connect()
    guest = TEST_SETTINGS.broker_url.replace(f"{url.username}:{url.password}@", "guest:guest@")
    with (
        Connection(guest, connect_timeout=5) as conn,
        pytest.raises(Exception, match="(?i)access|refused|denied"),
    ):
        conn.connect()
