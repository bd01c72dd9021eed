"""Fixtures shared by every test layer.

The code under test gets the test session's own Settings (databases, topic, consumer group,
RabbitMQ vhost, ports); the processes the tests start get the same as their environment.
"""

from __future__ import annotations

from tests.support import environment

environment.apply()

import subprocess  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import replace  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from flask import Flask  # noqa: E402

from settings import ROOT, Settings  # noqa: E402
from tests.support.environment import TEST_SETTINGS  # noqa: E402
from tests.support.kafka_tools import create_topic, delete_topic  # noqa: E402

UNIT_ONLY = "tests/unit"
# tests/cluster runs under `make test-cluster` (its own broker cluster and replica).
collect_ignore = [] if environment.KAFKA_CLUSTER else ["cluster"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """A failed test that ran the system reports the state of its processes (see diagnostics)."""
    report = yield
    system = getattr(item, "funcargs", {}).get("system")
    if report.failed and system is not None:
        from tests.support.diagnostics import system_report

        try:
            report.sections.append(("system state", system_report(system.processes)))
        except Exception as exc:  # a report must never hide the failure it describes
            report.sections.append(("system state", f"unavailable: {exc!r}"))
    return report


def _needs_servers(config: pytest.Config) -> bool:
    args = [str(a) for a in config.args]
    return not args or any(UNIT_ONLY not in a for a in args)


# Commands in the test process do not kick a relay: the tests run relays themselves.
QUIET_SETTINGS = replace(TEST_SETTINGS, relay_kick=False)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return TEST_SETTINGS


@pytest.fixture(scope="session")
def test_databases(settings: Any) -> None:
    """Create the test databases and their roles, migrate them as their owners, grant what
    each process kind may do (services/postgres.sh setup, before and after the migrations,
    as `make migrate` does); start each session with empty tables."""
    _database_setup()
    from flask_migrate import upgrade

    from auth_api import create_app as create_auth_app
    from query_api import create_migration_app
    from tests.support.notifications import migrate_notify_db

    for app in (create_auth_app(QUIET_SETTINGS), create_migration_app(QUIET_SETTINGS)):
        with app.app_context():
            upgrade()
    migrate_notify_db(environment.child_env())
    _database_setup()
    _sql(settings.auth_database_url, "TRUNCATE users, outbox, sessions, email_changes, login_failures")
    _sql(
        settings.projection_database_url,
        "TRUNCATE read_model.users, read_model.login_history, read_model.sessions, read_model.timeline,"
        " read_model.processed_events, dead_letters",
    )
    _sql(settings.notifier_database_url, "TRUNCATE sent_mail")


def _database_setup() -> None:
    subprocess.run(
        ["bash", str(ROOT / "services" / "postgres.sh"), "setup"], env=environment.child_env(), check=True
    )


@pytest.fixture(scope="session")
def broker_vhost(settings: Any) -> None:
    """The session's RabbitMQ vhost, emptied of tasks a previous run left behind."""
    subprocess.run(
        ["bash", str(ROOT / "services" / "rabbitmq.sh"), "setup"], env=environment.child_env(), check=True
    )
    from celery_config.app import make_celery

    celery_app = make_celery(settings)
    with celery_app.connection_for_write() as conn:
        for queue in celery_app.conf.task_queues:
            queue.bind(conn.default_channel).declare()
            queue.bind(conn.default_channel).purge()


@pytest.fixture(scope="session")
def topic(settings: Any) -> Iterator[str]:
    replication = environment.TOPIC_REPLICATION
    create_topic(settings.kafka_bootstrap, settings.kafka_topic, partitions=6, **replication)
    yield settings.kafka_topic
    delete_topic(settings.kafka_bootstrap, settings.kafka_topic)


@pytest.fixture(scope="session")
def auth_app(test_databases: None) -> Flask:
    from auth_api import create_app

    return create_app(QUIET_SETTINGS, {"TESTING": True})


@pytest.fixture(scope="session")
def query_app(test_databases: None) -> Flask:
    from query_api import create_app

    return create_app(QUIET_SETTINGS, {"TESTING": True})


def _sql(url: str, statement: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(statement))
    engine.dispose()


@pytest.fixture(scope="session")
def system(test_databases: None, broker_vhost: None, topic: str, tmp_path_factory: pytest.TempPathFactory):
    """Every process of the system, each on its own PID, against the test environment."""
    from tests.support.environment import TEST_ENV
    from tests.support.processes import session_processes, stop_stale_processes, wait_for_port
    from tests.support.system import System

    stop_stale_processes()
    group = session_processes(ROOT / ".data" / "test-logs" / environment.RUN_ID)
    running = System(group)
    try:
        for name in ("relay_worker", "projection_worker", "beat", "projector", "auth_api", "query_api"):
            group.start(name)
        group.start("flower")  # with the session's generated credential, as under `make run`
        wait_for_port(int(TEST_ENV["AUTH_API_PORT"]))
        wait_for_port(int(TEST_ENV["QUERY_API_PORT"]))
        running.wait_ready()
        yield running
    finally:
        group.stop_all()
