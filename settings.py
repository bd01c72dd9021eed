"""Every setting of every process: the only module that reads the environment.

Entry points (``wsgi.py``, the Celery worker module, ``python -m projector``, the CLIs) call
``load_settings()`` once and hand the result down; nothing else reads ``os.environ``.
Tests build a ``Settings`` from a mapping of their own (``load_settings(env)``) or with
``dataclasses.replace``. The defaults match what ``services/up.sh`` starts (including its
PGPORT, RABBITMQ_PORT and KAFKA_PORT), so a fresh checkout runs as is: each process kind's
database URL names its own role, with the password ``services/`` generated in SECRETS_DIR.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Settings:
    service_name: str
    data_dir: Path
    secrets_dir: Path  # generated passwords, one 0600 file each (services/lib.sh ensure_secret)
    log_level: str
    # --- servers: one database role per process kind (least privilege) ---
    auth_database_url: str  # the write API and auth_db's migrations: owner of auth_db
    relay_database_url: str  # the relay: reads and marks the outbox only
    projection_database_url: str  # workers, rebuild, query_db's migrations: owner of query_db
    query_database_url: str  # the read API: SELECT only
    # auth_db as the projection role: SELECT on data_keys only (event_contract.keystore)
    projection_keys_database_url: str
    notifier_keys_database_url: str  # auth_db as the notifier role: SELECT on data_keys only
    broker_url: str
    flower_basic_auth: str | None  # "user:password"; Flower refuses to start without one
    kafka_bootstrap: str  # one broker or several, comma-separated: clients take either as is
    kafka_topic: str
    consumer_group: str
    # --- tokens ---
    jwt_private_key_file: str
    jwt_public_key_file: str
    # Master keys wrapping the per-user data keys (event_contract.crypto.MasterKeys):
    # "id:base64[,id:base64...]", the current first; inline, else from the file.
    data_master_keys: str | None
    data_master_keys_file: str
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
    # --- email change codes ---
    email_code_ttl: timedelta
    email_code_max_attempts: int
    # Key of the HMAC that names an email in the failure counters (no email in clear there);
    # None: derived from the signing key, which only the write side holds.
    login_failure_key: str | None
    # --- rate limits of the unauthenticated endpoints (Flask-Limiter notation, e.g. "20/minute") ---
    rate_limit_storage_url: str  # shared by every API process; "memory://" counts per process
    rate_limit_key_prefix: str  # separates deployments (or test sessions) sharing one store
    rate_limit_per_address: str
    rate_limit_per_email: str
    # --- HTTP ---
    cors_origins: tuple[str, ...]
    consistency_wait_seconds: float
    consistency_max_waits: int  # per read API process; the other threads keep serving
    consistency_token_ttl: timedelta
    relay_kick: bool  # commands ask a relay worker to run right after commit
    # gunicorn processes and threads, a process per core for both APIs: hashing releases the
    # GIL, but the rest of a command is Python, and one process of 8 threads spent about a
    # third of its CPU handing the GIL around (register, cheap hash: 1x8 90/s at 11 ms of CPU
    # each, 2x4 202/s at 7.2 ms). web_* of the write API, query_web_* of the read API;
    # WEB_CONCURRENCY / WEB_THREADS set both.
    web_workers: int
    web_threads: int
    query_web_workers: int
    query_web_threads: int
    # --- relay ---
    relay_batch_size: int
    relay_max_seconds: float
    relay_delivery_timeout_ms: int
    relay_linger_ms: int  # how long the producer gathers a batch before sending it
    relay_interval_seconds: float
    relay_lock_timeout_seconds: float  # a relay silent this long in its transaction loses the lock
    relay_shards: int  # users split over this many relay locks (a stable hash of the user id)
    outbox_retention_seconds: int
    outbox_purge_interval_seconds: float
    # --- projector and projection workers ---
    projector_batch_size: int
    projector_max_queued_tasks: int
    projector_metrics_port: int
    # A consumer (projector, notifier) whose main loop is silent this long exits to be restarted.
    consumer_stall_seconds: float
    metrics_address: str
    celery_metrics_port: int | None
    # --- notifier (mail as a reaction to events) and its SMTP server ---
    notifier_database_url: str  # notification workers: owner of notify_db (what was mailed)
    notifier_group_id: str
    notifier_metrics_port: int
    smtp_host: str
    smtp_port: int
    smtp_from: str
    smtp_user: str | None
    smtp_password: str | None
    smtp_security: str  # "none", "starttls" or "tls" (implicit TLS, e.g. port 465)
    smtp_timeout_seconds: float
    mail_dir: Path  # the local mail catcher's Maildir (services/mail_catcher.py)
    # --- tests only: `python -m projector rebuild` stops at this phase until killed ---
    rebuild_pause_at: str | None = None
    # --- tests only: a notification worker holds here ("before-send", "after-send") to be killed ---
    notifier_pause_at: str | None = None

def psycopg2_url(url: str) -> str:
    """A PostgreSQL URL without a driver, on psycopg2: the services use its features (LISTEN,
    named-tuple cursors), and SQLAlchemy 2.1 would take psycopg 3, which is not installed."""
    scheme, separator, rest = url.partition("://")
    if separator and scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg2://{rest}"
    return url


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
    secrets_dir = Path(text("SECRETS_DIR", str(data_dir / "secrets")))
    pg = f"127.0.0.1:{text('PGPORT', '5432')}"
    # PG_REPLICA_PORT: the read API reads a streaming replica (services/postgres.sh replica-start).
    pg_reads = f"127.0.0.1:{text('PG_REPLICA_PORT', '')}" if text("PG_REPLICA_PORT", "") else pg
    # The names services/postgres.sh gives the roles and databases (tests pass their own).
    role_prefix = text("PG_ROLE_PREFIX", "cqrs")
    auth_db, query_db = text("AUTH_DB_NAME", "auth_db"), text("QUERY_DB_NAME", "query_db")
    notify_db = text("NOTIFY_DB_NAME", "notify_db")

    def database(variable: str, role: str, name: str, server: str = pg) -> str:
        role = f"{role_prefix}_{role}"
        password = _secret(secrets_dir / "postgres" / role)
        return psycopg2_url(text(variable, f"postgresql+psycopg2://{role}:{password}@{server}/{name}"))

    rabbit_user = text("RABBITMQ_USER", "cqrs")
    rabbit_password = _secret(secrets_dir / "rabbitmq" / rabbit_user)
    rabbit = f"127.0.0.1:{text('RABBITMQ_PORT', '5672')}/{text('RABBITMQ_VHOST', 'cqrs')}"
    flower_password = _secret(secrets_dir / "flower")
    celery_metrics = text("CELERY_METRICS_PORT", "")
    query_threads = integer("QUERY_WEB_THREADS", integer("WEB_THREADS", 4))
    return Settings(
        service_name=text("SERVICE_NAME", "cqrs"),
        data_dir=data_dir,
        secrets_dir=secrets_dir,
        log_level=text("LOG_LEVEL", "INFO").upper(),
        auth_database_url=database("AUTH_DATABASE_URL", "auth", auth_db),
        relay_database_url=database("RELAY_DATABASE_URL", "relay", auth_db),
        projection_database_url=database("PROJECTION_DATABASE_URL", "projection", query_db),
        query_database_url=database("QUERY_DATABASE_URL", "reader", query_db, pg_reads),
        projection_keys_database_url=database("PROJECTION_KEYS_DATABASE_URL", "projection", auth_db),
        notifier_keys_database_url=database("NOTIFIER_KEYS_DATABASE_URL", "notifier", auth_db),
        broker_url=text("CELERY_BROKER_URL", f"amqp://{rabbit_user}:{rabbit_password}@{rabbit}"),
        flower_basic_auth=text("FLOWER_BASIC_AUTH", f"flower:{flower_password}" if flower_password else "")
        or None,
        kafka_bootstrap=text("KAFKA_BOOTSTRAP_SERVERS", _kafka_bootstrap(text)),
        kafka_topic=text("KAFKA_TOPIC", "user-events"),
        consumer_group=text("PROJECTOR_GROUP_ID", "query-projector"),
        jwt_private_key_file=text("JWT_PRIVATE_KEY_FILE", str(data_dir / "keys" / "jwt_private.pem")),
        jwt_public_key_file=text("JWT_PUBLIC_KEY_FILE", str(data_dir / "keys" / "jwt_public.pem")),
        data_master_keys=env.get("DATA_MASTER_KEYS") or None,
        data_master_keys_file=text("DATA_MASTER_KEYS_FILE", str(data_dir / "keys" / "data_master_keys")),
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
        email_code_ttl=timedelta(seconds=integer("EMAIL_CODE_TTL_SECONDS", 15 * 60)),
        email_code_max_attempts=integer("EMAIL_CODE_MAX_ATTEMPTS", 5),
        login_failure_key=env.get("LOGIN_FAILURE_KEY") or None,
        rate_limit_storage_url=text(
            "RATE_LIMIT_STORAGE_URL", f"redis://127.0.0.1:{text('REDIS_PORT', '6379')}/0"
        ),
        rate_limit_key_prefix=text("RATE_LIMIT_KEY_PREFIX", "cqrs"),
        rate_limit_per_address=text("RATE_LIMIT_PER_ADDRESS", "60/minute;600/hour"),
        rate_limit_per_email=text("RATE_LIMIT_PER_EMAIL", "10/minute;100/hour"),
        cors_origins=tuple(o.strip() for o in text("CORS_ORIGINS", "").split(",") if o.strip()),
        consistency_wait_seconds=number("CONSISTENCY_WAIT_SECONDS", 2.0),
        # At most half the threads of a process may wait, so waits never starve other reads.
        consistency_max_waits=integer("CONSISTENCY_MAX_WAITS", max(1, query_threads // 2)),
        consistency_token_ttl=timedelta(seconds=integer("CONSISTENCY_TOKEN_TTL_SECONDS", 600)),
        relay_kick=flag("RELAY_KICK", True),
        web_workers=integer("WEB_CONCURRENCY", 2),
        web_threads=integer("WEB_THREADS", 4),
        query_web_workers=integer("QUERY_WEB_CONCURRENCY", integer("WEB_CONCURRENCY", 2)),
        query_web_threads=query_threads,
        relay_batch_size=integer("RELAY_BATCH_SIZE", 1000),
        relay_max_seconds=number("RELAY_MAX_SECONDS", 5.0),
        relay_delivery_timeout_ms=integer("RELAY_DELIVERY_TIMEOUT_MS", 10000),
        relay_linger_ms=integer("RELAY_LINGER_MS", 5),
        # Commands kick the relay right after commit (latency); beat's tick is the safety net for
        # a lost kick or a failed run, and each tick costs relay, beat, broker and Flower CPU.
        relay_interval_seconds=number("RELAY_INTERVAL_SECONDS", 5.0 if flag("RELAY_KICK", True) else 1.0),
        relay_lock_timeout_seconds=number("RELAY_LOCK_TIMEOUT_SECONDS", 15.0),
        relay_shards=max(1, integer("RELAY_SHARDS", 1)),
        outbox_retention_seconds=integer("OUTBOX_RETENTION_SECONDS", 7 * 24 * 3600),
        outbox_purge_interval_seconds=number("OUTBOX_PURGE_INTERVAL_SECONDS", 600.0),
        projector_batch_size=integer("PROJECTOR_BATCH_SIZE", 500),
        projector_max_queued_tasks=integer("PROJECTOR_MAX_QUEUED_TASKS", 200),
        projector_metrics_port=integer("PROJECTOR_METRICS_PORT", 9108),
        consumer_stall_seconds=number("CONSUMER_STALL_SECONDS", 120.0),
        metrics_address=text("METRICS_ADDR", "127.0.0.1"),
        celery_metrics_port=int(celery_metrics) if celery_metrics else None,
        rebuild_pause_at=text("REBUILD_PAUSE_AT", "") or None,
        notifier_database_url=database("NOTIFIER_DATABASE_URL", "notifier", notify_db),
        notifier_group_id=text("NOTIFIER_GROUP_ID", "notifier"),
        notifier_metrics_port=integer("NOTIFIER_METRICS_PORT", 9111),
        smtp_host=text("SMTP_HOST", "127.0.0.1"),
        smtp_port=integer("SMTP_PORT", 1025),
        smtp_from=text("SMTP_FROM", "CQRS user service <no-reply@cqrs.localhost>"),
        smtp_user=env.get("SMTP_USER") or None,
        smtp_password=env.get("SMTP_PASSWORD") or None,
        smtp_security=_choice("SMTP_SECURITY", text("SMTP_SECURITY", "none"), ("none", "starttls", "tls")),
        smtp_timeout_seconds=number("SMTP_TIMEOUT_SECONDS", 10.0),
        mail_dir=Path(text("MAIL_DIR", str(data_dir / "mail"))),
        notifier_pause_at=text("NOTIFIER_PAUSE_AT", "") or None,
    )


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    value = value.lower()
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _kafka_bootstrap(text: Callable[[str, str], str]) -> str:
    """The broker services/up.sh starts: one, or with KAFKA_CLUSTER=1 the three of the cluster
    profile (services/kafka.sh: ports KAFKA_CLUSTER_PORT, +1, +2)."""
    if text("KAFKA_CLUSTER", "0").lower() in ("1", "true", "yes", "on"):
        first = int(text("KAFKA_CLUSTER_PORT", "9192"))
        return ",".join(f"127.0.0.1:{first + n}" for n in range(3))
    return f"127.0.0.1:{text('KAFKA_PORT', '9092')}"


def _secret(path: Path) -> str:
    """A generated password (``services/lib.sh`` ensure_secret), or "" before the set-up made it."""
    try:
        return path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return ""


def _pem(value: str | None) -> str | None:
    # A PEM passed through an environment variable often has its newlines escaped.
    return value.replace("\\n", "\n") if value else None
