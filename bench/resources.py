"""The benchmarks' own databases, topics and vhost: created, migrated and emptied.

Call only after ``bench.environment.apply()``.
"""

from __future__ import annotations

import os
import subprocess
import time
from functools import cache
from typing import Any

from sqlalchemy import Engine, create_engine, text

from bench.environment import ROOT, VHOST

READ_MODEL_TABLES = (
    "read_model.users, read_model.login_history, read_model.sessions, read_model.processed_events,"
    " dead_letters"
)


def _database_setup() -> None:
    # Roles, databases and grants (services/postgres.sh setup) with the benchmark's names.
    subprocess.run(["bash", str(ROOT / "services" / "postgres.sh"), "setup"], check=True)


def prepare_databases() -> None:
    """Create ``auth_bench``/``query_bench`` and their roles if missing, migrate them to head
    as their owners, and grant each process kind its privileges."""
    from dataclasses import replace

    from flask_migrate import upgrade

    from auth_api import create_app as create_auth_app
    from query_api import create_migration_app
    from settings import load_settings

    _database_setup()
    settings = replace(load_settings(), relay_kick=False)
    for factory in (create_auth_app, create_migration_app):
        app = factory(settings)
        with app.app_context():
            upgrade()
            from auth_api.extensions import db as auth_db
            from query_api.extensions import db as query_db

            for db in (auth_db, query_db):
                if app in getattr(db, "_app_engines", {}):
                    db.engine.dispose()
    _database_setup()  # again: the tables the migrations made get their grants


@cache
def auth_engine() -> Engine:
    from settings import load_settings

    return create_engine(load_settings().auth_database_url, pool_pre_ping=True)


@cache
def query_engine() -> Engine:
    from settings import load_settings

    # The owner role: the benchmarks empty and watch the read model.
    return create_engine(load_settings().projection_database_url, pool_pre_ping=True)


def sql(engine: Engine, statement: str, **params: object) -> object:
    with engine.begin() as conn:
        result = conn.execute(text(statement), params)
        return result.scalar() if result.returns_rows else None


def reset_auth() -> None:
    sql(auth_engine(), "TRUNCATE users, sessions, email_changes, login_failures, outbox RESTART IDENTITY")


def reset_query() -> None:
    sql(query_engine(), f"TRUNCATE {READ_MODEL_TABLES} RESTART IDENTITY")


def vacuum(engine: Engine, table: str) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"VACUUM ANALYZE {table}"))


def prepare_vhost() -> None:
    """The benchmarks' RabbitMQ vhost, with both queues declared and empty."""
    vhost = os.environ.get("BENCH_VHOST", VHOST)
    # rabbitmqctl boots an Erlang VM: only when the vhost is not usable already. The broker
    # may be restarting (other people's fault-injection tests share it): retry for a while.
    deadline = time.monotonic() + 120
    while not _vhost_usable():
        script = subprocess.run(["bash", str(ROOT / "services" / "rabbitmq.sh"), "vhost", vhost], check=False)
        if script.returncode == 0 and _vhost_usable():
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"RabbitMQ vhost {vhost} not usable after 120 s")
        time.sleep(3)
    purge_queues()


def _vhost_usable() -> bool:
    from kombu import Connection

    from settings import load_settings

    try:
        with Connection(load_settings().broker_url, connect_timeout=3) as conn:
            conn.connect()
            return True
    except Exception:  # access refused (no such vhost) or no broker: let the script say
        return False


@cache
def celery_app() -> Any:
    """A Celery app on the benchmark's vhost, to declare and purge its queues."""
    from celery_config.app import make_celery
    from settings import load_settings

    return make_celery(load_settings())


def purge_queues() -> None:
    app = celery_app()
    with app.connection_for_write() as conn:
        for queue in app.conf.task_queues:
            queue.bind(conn.default_channel).declare()
            queue.bind(conn.default_channel).purge()


# --- Kafka -------------------------------------------------------------------------------


def create_topic(name: str, partitions: int = 6) -> None:
    from services.create_topic import create_topic as create
    from settings import load_settings

    if "bench" not in name:
        raise RuntimeError(f"benchmarks create only their own topics, not {name!r}")
    create(load_settings().kafka_bootstrap, name, partitions, timeout=60.0)


def delete_topic(name: str) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from settings import load_settings

    if "bench" not in name:
        raise RuntimeError(f"benchmarks delete only their own topics, not {name!r}")
    admin = AdminClient({"bootstrap.servers": load_settings().kafka_bootstrap})
    for future in admin.delete_topics([name], operation_timeout=30).values():
        try:
            future.result(30)
        except KafkaException:
            pass


def topic_end_offsets(name: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    from settings import load_settings

    consumer = Consumer(
        {"bootstrap.servers": load_settings().kafka_bootstrap, "group.id": "bench-watermarks"}
    )
    try:
        partitions = consumer.list_topics(name, timeout=30).topics[name].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=30)[1]
            for p in sorted(partitions)
        }
    finally:
        consumer.close()
