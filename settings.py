"""Every setting of every process, read from environment variables with local defaults.

The defaults match what ``services/up.sh`` starts (including its PGPORT, RABBITMQ_PORT and
KAFKA_PORT), so a fresh checkout runs as is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("DATA_DIR", ROOT / ".data"))


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _float(name: str, default: float) -> float:
    return float(_env(name, str(default)))


@dataclass(frozen=True)
class Settings:
    auth_database_url: str = field(
        default_factory=lambda: _env(
            "AUTH_DATABASE_URL", f"postgresql+psycopg2://cqrs:cqrs@127.0.0.1:{_env('PGPORT', '5432')}/auth_db"
        )
    )
    query_database_url: str = field(
        default_factory=lambda: _env(
            "QUERY_DATABASE_URL",
            f"postgresql+psycopg2://cqrs:cqrs@127.0.0.1:{_env('PGPORT', '5432')}/query_db",
        )
    )
    broker_url: str = field(
        default_factory=lambda: _env(
            "CELERY_BROKER_URL", f"amqp://guest:guest@127.0.0.1:{_env('RABBITMQ_PORT', '5672')}//"
        )
    )
    kafka_bootstrap: str = field(default_factory=lambda: _env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    kafka_topic: str = field(default_factory=lambda: _env("KAFKA_TOPIC", "user-events"))
    consumer_group: str = field(default_factory=lambda: _env("PROJECTOR_GROUP_ID", "query-projector"))
    jwt_private_key_file: str = field(
        default_factory=lambda: _env("JWT_PRIVATE_KEY_FILE", str(DATA_DIR / "keys" / "jwt_private.pem"))
    )
    jwt_public_key_file: str = field(
        default_factory=lambda: _env("JWT_PUBLIC_KEY_FILE", str(DATA_DIR / "keys" / "jwt_public.pem"))
    )
    # Relay: rows per Kafka round trip, and how long one task may keep draining.
    relay_batch_size: int = field(default_factory=lambda: _int("RELAY_BATCH_SIZE", 1000))
    relay_max_seconds: float = field(default_factory=lambda: _float("RELAY_MAX_SECONDS", 5.0))
    relay_delivery_timeout_ms: int = field(default_factory=lambda: _int("RELAY_DELIVERY_TIMEOUT_MS", 10000))
    relay_interval_seconds: float = field(default_factory=lambda: _float("RELAY_INTERVAL_SECONDS", 1.0))
    outbox_retention_seconds: int = field(
        default_factory=lambda: _int("OUTBOX_RETENTION_SECONDS", 7 * 24 * 3600)
    )
    # Projector: events per Celery task, and the projections queue depth that pauses it.
    projector_batch_size: int = field(default_factory=lambda: _int("PROJECTOR_BATCH_SIZE", 500))
    projector_max_queued_tasks: int = field(default_factory=lambda: _int("PROJECTOR_MAX_QUEUED_TASKS", 200))
    projector_metrics_port: int = field(default_factory=lambda: _int("PROJECTOR_METRICS_PORT", 9108))


def load_settings() -> Settings:
    return Settings()
