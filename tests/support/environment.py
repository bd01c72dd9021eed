"""The environment of a test session: its own databases, topic, consumer group, vhost, ports.

Handed to the code under test as a ``Settings`` (``TEST_SETTINGS``) and to the processes a
test starts as their environment (``child_env``), so a `make run` on the same machine and
the tests never see each other's data. Nothing here changes this process's environment.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from settings import ROOT, load_settings

DATA_DIR = load_settings().data_dir

RUN_ID = uuid.uuid4().hex[:8]
PG = "postgresql+psycopg2://cqrs:cqrs@127.0.0.1:{port}/{db}"
PG_PORT = os.environ.get("PGPORT", "5432")
KAFKA_PORT = os.environ.get("KAFKA_PORT", "9092")


# TEST_NAMESPACE=<n> (a small number) gives a session databases, a vhost, ports and files of
# its own, so two checkouts on one machine can run test sessions side by side.
NAMESPACE = os.environ.get("TEST_NAMESPACE", "")
if NAMESPACE and not NAMESPACE.isdigit():
    raise SystemExit("TEST_NAMESPACE must be a small number (it shifts the test ports)")
SUFFIX = f"_{NAMESPACE}" if NAMESPACE else ""
VHOST = f"cqrs_test{SUFFIX}"


def _port(name: str, default: str) -> str:
    # TEST_<NAME> moves one port; a namespace moves them all by 100 per step.
    return os.environ.get(f"TEST_{name}", str(int(default) + 100 * int(NAMESPACE or 0)))


TEST_ENV = {
    "AUTH_DATABASE_URL": PG.format(port=PG_PORT, db=f"auth_test{SUFFIX}"),
    "QUERY_DATABASE_URL": PG.format(port=PG_PORT, db=f"query_test{SUFFIX}"),
    "KAFKA_TOPIC": f"user-events-test-{RUN_ID}",
    "PROJECTOR_GROUP_ID": f"query-projector-test-{RUN_ID}",
    "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{KAFKA_PORT}",
    "CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{os.environ.get('RABBITMQ_PORT', '5672')}/{VHOST}",
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
    "BEAT_SCHEDULE": str(DATA_DIR / f"test-celerybeat-schedule{SUFFIX}"),
    "JWT_PRIVATE_KEY_FILE": str(DATA_DIR / "test-keys" / "jwt_private.pem"),
    "JWT_PUBLIC_KEY_FILE": str(DATA_DIR / "test-keys" / "jwt_public.pem"),
}


TEST_SETTINGS = load_settings({**os.environ, **TEST_ENV})


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a process a test starts: the test environment, the project importable."""
    return {**os.environ, **TEST_ENV, "PYTHONPATH": str(ROOT), **extra}


def apply() -> None:
    """The test session's signing keys (the servers' data is created by fixtures)."""
    from auth_api.keygen import generate_key_pair

    generate_key_pair(Path(TEST_ENV["JWT_PRIVATE_KEY_FILE"]), Path(TEST_ENV["JWT_PUBLIC_KEY_FILE"]))
