"""Every setting of every process: the only module that reads the environment.

Entry points (``wsgi.py``, the Celery worker module, ``python -m projector``, the CLIs) call
``load_settings()`` once and hand the result down; nothing else reads ``os.environ``.
Tests build a ``Settings`` from a mapping of their own (``load_settings(env)``) or with
``dataclasses.replace``. The defaults match what ``services/up.sh`` starts (including its
PGPORT, RABBITMQ_PORT and KAFKA_PORT), so a fresh checkout runs as is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Settings:
    service_name: str
    data_dir: Path
    log_level: str
    # --- servers ---
    auth_database_url: str
    query_database_url: str
    broker_url: str
    kafka_bootstrap: str
    kafka_topic: str
    consumer_group: str
    # --- tokens ---
    jwt_private_key_file: str
    jwt_public_key_file: str
    jwt_private_key_pem: str | None  # the PEM itself, instead of the file (containers)
    jwt_public_key_pem: str | None
    jwt_access_ttl: timedelta
    jwt_refresh_ttl: timedelta
    # --- passwords: "argon2id", or a werkzeug method such as "pbkdf2:sha256:1000" (tests) ---
    password_hash_method: str
    argon2_time_cost: int
    argon2_memory_kib: int
    argon2_parallelism: int
    # --- login lockout ---
    lockout_max_failures: int
    lockout_window: timedelta
    lockout_duration: timedelta
    # --- HTTP ---
    cors_origins: tuple[str, ...]
    consistency_wait_seconds: float
    relay_kick: bool  # commands ask a relay worker to run right after commit
    web_workers: int
    web_threads: int
    # --- relay ---
    relay_batch_size: int
    relay_max_seconds: float
    relay_delivery_timeout_ms: int
    relay_interval_seconds: float
    relay_lock_timeout_seconds: float  # a relay silent this long in its transaction loses the lock
    outbox_retention_seconds: int
    outbox_purge_interval_seconds: float
    # --- projector and projection workers ---
    projector_batch_size: int
    projector_max_queued_tasks: int
    projector_metrics_port: int
    metrics_address: str
    celery_metrics_port: int | None
    # --- tests only: `python -m projector rebuild` stops at this phase until killed ---
    rebuild_pause_at: str | None = None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from ``environ`` (default: this process's environment)."""
    env = os.environ if environ is None else environ

    def text(name: str, default: str) -> str:
        value = env.get(name)
        return value if value not in (None, "") else default

    def integer(name: str, default: int) -> int:
        return int(text(name, str(default)))

    def number(name: str, default: float) -> float:
        return float(text(name, str(default)))

    def flag(name: str, default: bool) -> bool:
        return text(name, "1" if default else "0").lower() in ("1", "true", "yes", "on")

    data_dir = Path(text("DATA_DIR", str(ROOT / ".data")))
    pg = f"127.0.0.1:{text('PGPORT', '5432')}"
    celery_metrics = text("CELERY_METRICS_PORT", "")
    return Settings(
        service_name=text("SERVICE_NAME", "cqrs"),
        data_dir=data_dir,
        log_level=text("LOG_LEVEL", "INFO").upper(),
        auth_database_url=text("AUTH_DATABASE_URL", f"postgresql+psycopg2://cqrs:cqrs@{pg}/auth_db"),
        query_database_url=text("QUERY_DATABASE_URL", f"postgresql+psycopg2://cqrs:cqrs@{pg}/query_db"),
        broker_url=text(
            "CELERY_BROKER_URL", f"amqp://guest:guest@127.0.0.1:{text('RABBITMQ_PORT', '5672')}//"
        ),
        kafka_bootstrap=text("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{text('KAFKA_PORT', '9092')}"),
        kafka_topic=text("KAFKA_TOPIC", "user-events"),
        consumer_group=text("PROJECTOR_GROUP_ID", "query-projector"),
        jwt_private_key_file=text("JWT_PRIVATE_KEY_FILE", str(data_dir / "keys" / "jwt_private.pem")),
        jwt_public_key_file=text("JWT_PUBLIC_KEY_FILE", str(data_dir / "keys" / "jwt_public.pem")),
        jwt_private_key_pem=_pem(env.get("JWT_PRIVATE_KEY")),
        jwt_public_key_pem=_pem(env.get("JWT_PUBLIC_KEY")),
        jwt_access_ttl=timedelta(seconds=integer("JWT_ACCESS_TTL_SECONDS", 15 * 60)),
        jwt_refresh_ttl=timedelta(seconds=integer("JWT_REFRESH_TTL_SECONDS", 7 * 24 * 3600)),
        password_hash_method=text("PASSWORD_HASH_METHOD", "argon2id"),
        # OWASP Password Storage Cheat Sheet, first Argon2id recommendation: 19 MiB, t=2, p=1.
        argon2_time_cost=integer("ARGON2_TIME_COST", 2),
        argon2_memory_kib=integer("ARGON2_MEMORY_KIB", 19 * 1024),
        argon2_parallelism=integer("ARGON2_PARALLELISM", 1),
        lockout_max_failures=integer("LOCKOUT_MAX_FAILURES", 5),
        lockout_window=timedelta(seconds=integer("LOCKOUT_WINDOW_SECONDS", 15 * 60)),
        lockout_duration=timedelta(seconds=integer("LOCKOUT_DURATION_SECONDS", 15 * 60)),
        cors_origins=tuple(o.strip() for o in text("CORS_ORIGINS", "").split(",") if o.strip()),
        consistency_wait_seconds=number("CONSISTENCY_WAIT_SECONDS", 2.0),
        relay_kick=flag("RELAY_KICK", True),
        web_workers=integer("WEB_CONCURRENCY", 2),
        web_threads=integer("WEB_THREADS", 4),
        relay_batch_size=integer("RELAY_BATCH_SIZE", 1000),
        relay_max_seconds=number("RELAY_MAX_SECONDS", 5.0),
        relay_delivery_timeout_ms=integer("RELAY_DELIVERY_TIMEOUT_MS", 10000),
        relay_interval_seconds=number("RELAY_INTERVAL_SECONDS", 1.0),
        relay_lock_timeout_seconds=number("RELAY_LOCK_TIMEOUT_SECONDS", 15.0),
        outbox_retention_seconds=integer("OUTBOX_RETENTION_SECONDS", 7 * 24 * 3600),
        outbox_purge_interval_seconds=number("OUTBOX_PURGE_INTERVAL_SECONDS", 600.0),
        projector_batch_size=integer("PROJECTOR_BATCH_SIZE", 500),
        projector_max_queued_tasks=integer("PROJECTOR_MAX_QUEUED_TASKS", 200),
        projector_metrics_port=integer("PROJECTOR_METRICS_PORT", 9108),
        metrics_address=text("METRICS_ADDR", "127.0.0.1"),
        celery_metrics_port=int(celery_metrics) if celery_metrics else None,
        rebuild_pause_at=text("REBUILD_PAUSE_AT", "") or None,
    )


def _pem(value: str | None) -> str | None:
    # A PEM passed through an environment variable often has its newlines escaped.
    return value.replace("\\n", "\n") if value else None
