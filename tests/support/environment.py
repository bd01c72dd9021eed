"""The environment of a test session: its own databases and roles, topic, consumer group,
RabbitMQ user and vhost, ports, generated passwords.

Handed to the code under test as a ``Settings`` (``TEST_SETTINGS``) and to the processes a
test starts as their environment (``child_env``), so a `make run` on the same machine and
the tests never see each other's data. Nothing here changes this process's environment.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

from settings import ROOT, load_settings

DATA_DIR = load_settings().data_dir

RUN_ID = uuid.uuid4().hex[:8]
KAFKA_PORT = os.environ.get("KAFKA_PORT", "9092")


# TEST_NAMESPACE=<n> (a small number) gives a session databases, a vhost, ports and files of
# its own, so two checkouts on one machine can run test sessions side by side.
NAMESPACE = os.environ.get("TEST_NAMESPACE", "")
if NAMESPACE and not NAMESPACE.isdigit():
    raise SystemExit("TEST_NAMESPACE must be a small number (it shifts the test ports)")
SUFFIX = f"_{NAMESPACE}" if NAMESPACE else ""
VHOST = f"cqrs_test{SUFFIX}"
# Roles are cluster-wide: a session's roles carry its namespace ("cqrs_test_2_reader", ...).
ROLE_PREFIX = f"cqrs_test{SUFFIX}"
ROLES = {kind: f"{ROLE_PREFIX}_{kind}" for kind in ("auth", "relay", "projection", "reader", "notifier")}
SECRETS_DIR = DATA_DIR / f"test-secrets{SUFFIX}"


def _port(name: str, default: str) -> str:
    # TEST_<NAME> moves one port; a namespace moves them all by 100 per step.
    return os.environ.get(f"TEST_{name}", str(int(default) + 100 * int(NAMESPACE or 0)))


def _on(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


# `make test-cluster` (TEST_KAFKA_CLUSTER=1, TEST_PG_REPLICA=1): the session's processes use a
# three-broker cluster and read the query database from a streaming replica, both on ports of
# the session's namespace (tests/cluster starts them), beside the shared single broker.
KAFKA_CLUSTER = _on("TEST_KAFKA_CLUSTER")
KAFKA_CLUSTER_PORT = _port("KAFKA_CLUSTER_PORT", "19192")
PG_REPLICA = _on("TEST_PG_REPLICA")
PG_REPLICA_PORT = _port("PG_REPLICA_PORT", "15433")
KAFKA_BOOTSTRAP = (
    ",".join(f"127.0.0.1:{int(KAFKA_CLUSTER_PORT) + n}" for n in range(3))
    if KAFKA_CLUSTER
    else f"127.0.0.1:{KAFKA_PORT}"
)
# The topic as services/up.sh makes it on the cluster: on three brokers, acks=all means two.
TOPIC_REPLICATION = {"replication_factor": 3, "min_insync_replicas": 2} if KAFKA_CLUSTER else {}

# The names services/postgres.sh and services/rabbitmq.sh set up, and settings.py turns into
# URLs with the generated passwords: the same path as `make run`, with the session's names.
NAMES = {
    "PG_ROLE_PREFIX": ROLE_PREFIX,
    "AUTH_DB_NAME": f"auth_test{SUFFIX}",
    "QUERY_DB_NAME": f"query_test{SUFFIX}",
    "NOTIFY_DB_NAME": f"notify_test{SUFFIX}",
    "RABBITMQ_USER": ROLE_PREFIX,
    "RABBITMQ_VHOST": VHOST,
    "SECRETS_DIR": str(SECRETS_DIR),
}
# Generated before the settings read them (the servers' roles are made by fixtures).
subprocess.run(
    [
        "bash",
        str(ROOT / "services" / "secrets.sh"),
        "ensure",
        *(f"postgres/{role}" for role in ROLES.values()),
        f"rabbitmq/{ROLE_PREFIX}",
        "flower",
    ],
    env={**os.environ, **NAMES},
    check=True,
)
# Variables of the developer's shell that would point a test at `make run`'s resources.
_SHADOWED = (
    "AUTH_DATABASE_URL",
    "RELAY_DATABASE_URL",
    "PROJECTION_DATABASE_URL",
    "QUERY_DATABASE_URL",
    "NOTIFIER_DATABASE_URL",
    "CELERY_BROKER_URL",
    "FLOWER_BASIC_AUTH",
)
_BASE = {key: value for key, value in os.environ.items() if key not in _SHADOWED}
_URLS = load_settings({**_BASE, **NAMES})
_REPLICA_URLS = load_settings({**_BASE, **NAMES, "PG_REPLICA_PORT": PG_REPLICA_PORT})

TEST_ENV = {
    **NAMES,
    "AUTH_DATABASE_URL": _URLS.auth_database_url,
    "RELAY_DATABASE_URL": _URLS.relay_database_url,
    "PROJECTION_DATABASE_URL": _URLS.projection_database_url,
    "QUERY_DATABASE_URL": (_REPLICA_URLS if PG_REPLICA else _URLS).query_database_url,
    "NOTIFIER_DATABASE_URL": _URLS.notifier_database_url,
    "CELERY_BROKER_URL": _URLS.broker_url,
    "KAFKA_TOPIC": f"user-events-test-{RUN_ID}",
    "PROJECTOR_GROUP_ID": f"query-projector-test-{RUN_ID}",
    "KAFKA_BOOTSTRAP_SERVERS": KAFKA_BOOTSTRAP,
    # Registration hashes in every test; the production default (argon2id) is tested apart.
    "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
    "AUTH_API_PORT": _port("AUTH_API_PORT", "18088"),
    "QUERY_API_PORT": _port("QUERY_API_PORT", "18089"),
    "FLOWER_PORT": _port("FLOWER_PORT", "15555"),
    "PROJECTOR_METRICS_PORT": _port("PROJECTOR_METRICS_PORT", "19108"),
    "RELAY_DELIVERY_TIMEOUT_MS": "5000",
    # Rate limits stay on in every test, generous so that no test is throttled by another;
    # tests/e2e/test_rate_limits.py starts an API with tight ones.
    "RATE_LIMIT_STORAGE_URL": f"redis://127.0.0.1:{os.environ.get('REDIS_PORT', '6379')}/0",
    "RATE_LIMIT_KEY_PREFIX": f"test{SUFFIX}-{RUN_ID}",
    "RATE_LIMIT_PER_ADDRESS": "100000/minute",
    "RATE_LIMIT_PER_EMAIL": "100000/minute",
    "LOG_LEVEL": "INFO",
    "RELAY_METRICS_PORT": _port("RELAY_METRICS_PORT", "19109"),
    "PROJECTION_METRICS_PORT": _port("PROJECTION_METRICS_PORT", "19110"),
    "RELAY_NODE": f"relay-test{SUFFIX}",
    "PROJECTION_NODE": f"projections-test{SUFFIX}",
    # The notifier: its own group, metrics ports, and a mail catcher of the session's own.
    "NOTIFIER_GROUP_ID": f"notifier-test-{RUN_ID}",
    "NOTIFIER_METRICS_PORT": _port("NOTIFIER_METRICS_PORT", "19111"),
    "NOTIFICATION_METRICS_PORT": _port("NOTIFICATION_METRICS_PORT", "19112"),
    "NOTIFICATION_NODE": f"notifications-test{SUFFIX}",
    "SMTP_PORT": _port("SMTP_PORT", "11025"),
    "SMTP_TIMEOUT_SECONDS": "5",
    "MAIL_DIR": str(DATA_DIR / f"test-mail{SUFFIX}" / RUN_ID),
    "BEAT_SCHEDULE": str(DATA_DIR / f"test-celerybeat-schedule{SUFFIX}"),
    "JWT_PRIVATE_KEY_FILE": str(DATA_DIR / "test-keys" / "jwt_private.pem"),
    "JWT_PUBLIC_KEY_FILE": str(DATA_DIR / "test-keys" / "jwt_public.pem"),
    "DATA_MASTER_KEYS_FILE": str(DATA_DIR / "test-keys" / "data_master_keys"),
}


TEST_SETTINGS = load_settings({**_BASE, **TEST_ENV})


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a process a test starts: the test environment, the project importable."""
    return {**_BASE, **TEST_ENV, "PYTHONPATH": str(ROOT), **extra}


def apply() -> None:
    """The test session's signing keys (the servers' data is created by fixtures)."""
    from auth_api.keygen import ensure_master_keys, generate_key_pair

    generate_key_pair(Path(TEST_ENV["JWT_PRIVATE_KEY_FILE"]), Path(TEST_ENV["JWT_PUBLIC_KEY_FILE"]))
    ensure_master_keys(Path(TEST_ENV["DATA_MASTER_KEYS_FILE"]))
