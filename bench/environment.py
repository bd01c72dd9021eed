"""The benchmarks' own environment: databases, topics, consumer groups, vhost, ports, keys.

``apply()`` puts it in this process's environment, for ``load_settings()`` here and for the
processes the benchmark starts (the Procfile's variables too). Nothing here runs at import.
"""

from __future__ import annotations

import os
import random
import socket
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("DATA_DIR", ROOT / ".data"))
RESULTS_DIR = ROOT / "bench" / "results"
LOG_DIR = DATA_DIR / "bench-logs"
VHOST = "cqrs_bench"

_KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}")

BENCH_ENV: dict[str, str] = {
    # Roles, databases, RabbitMQ user: services/postgres.sh and rabbitmq.sh set them up with
    # these names, settings.py builds the URLs with the generated passwords (as `make run`).
    "PG_ROLE_PREFIX": "cqrs_bench",
    "AUTH_DB_NAME": "auth_bench",
    "QUERY_DB_NAME": "query_bench",
    "NOTIFY_DB_NAME": "notify_bench",
    "RABBITMQ_USER": "cqrs_bench",
    "RABBITMQ_VHOST": VHOST,
    "KAFKA_BOOTSTRAP_SERVERS": _KAFKA,
    # Each scenario creates (and deletes) its own topic and group; these are placeholders.
    "KAFKA_TOPIC": "user-events-bench",
    "PROJECTOR_GROUP_ID": "query-projector-bench",
    # Ports: these unless taken (or BENCH_<NAME> says otherwise), else a free one; see apply().
    # Below Linux's ephemeral range (32768-60999): an outgoing connection can hold a port in
    # that range as its own local port, and a server then fails to bind it (a CI run lost the
    # erasure benchmark's auth_api that way).
    "AUTH_API_PORT": "28088",
    "QUERY_API_PORT": "28089",
    "FLOWER_PORT": "28555",
    "PROJECTOR_METRICS_PORT": "29108",
    "RELAY_METRICS_PORT": "29109",
    "PROJECTION_METRICS_PORT": "29110",
    # The Procfile's node names and beat schedule: never the ones of `make run` or the tests.
    "RELAY_NODE": "relay-bench",
    "PROJECTION_NODE": "projections-bench",
    "BEAT_SCHEDULE": str(DATA_DIR / "bench-celerybeat-schedule"),
    "JWT_PRIVATE_KEY_FILE": str(DATA_DIR / "bench-keys" / "jwt_private.pem"),
    "DATA_MASTER_KEYS_FILE": str(DATA_DIR / "bench-keys" / "data_master_keys"),
    "JWT_PUBLIC_KEY_FILE": str(DATA_DIR / "bench-keys" / "jwt_public.pem"),
    "LOG_LEVEL": "INFO",  # as in production: log lines are part of the cost
    # The load comes from one address and cycles a few emails: limits as in production would
    # answer 429 after a second. The limiter still counts every request in Redis (its cost stays
    # measured); only the thresholds are out of reach. Keys of their own in the shared Redis.
    "RATE_LIMIT_PER_ADDRESS": "10000000/minute",
    "RATE_LIMIT_PER_EMAIL": "10000000/minute",
    "RATE_LIMIT_KEY_PREFIX": "cqrs-bench",
    "PYTHONPATH": str(ROOT),
}

_FORBIDDEN_DATABASES = {"auth_db", "query_db", "notify_db", "auth_test", "query_test", "notify_test"}
# A tiny run (``--tiny``, e.g. from the test suite) gets databases and a vhost of its own, so
# it never empties the tables of a full ``make bench`` running at the same time.
TINY_SUFFIX = "_tiny"
_NAMESPACE = os.environ.get("TEST_NAMESPACE", "")
_lock_file = None  # held for the life of the process: one benchmark per instance at a time


def run_id() -> str:
    return uuid.uuid4().hex[:8]


def check(env: dict[str, str]) -> None:
    """Refuse an environment that would point a benchmark at dev or test resources."""
    for key, prefix in (
        ("AUTH_DB_NAME", "auth_bench"),
        ("QUERY_DB_NAME", "query_bench"),
        ("NOTIFY_DB_NAME", "notify_bench"),
    ):
        database = env[key]
        if database in _FORBIDDEN_DATABASES or not database.startswith(prefix):
            raise RuntimeError(f"{key} must name a {prefix}* database, not {database!r}")
    for key in ("AUTH_DATABASE_URL", "RELAY_DATABASE_URL", "PROJECTION_DATABASE_URL", "QUERY_DATABASE_URL"):
        if key in env:  # the URLs come from the names above, never from a shell's variables
            raise RuntimeError(f"unset {key}: the benchmarks use their own databases and roles")
    if "CELERY_BROKER_URL" in env or not env["RABBITMQ_VHOST"].startswith(VHOST):
        raise RuntimeError("the benchmarks use their own cqrs_bench* vhost (unset CELERY_BROKER_URL)")
    if "bench" not in env["KAFKA_TOPIC"] or "bench" not in env["PROJECTOR_GROUP_ID"]:
        raise RuntimeError("the benchmarks use their own topics and consumer groups only")


PORTS = (
    "AUTH_API_PORT",
    "QUERY_API_PORT",
    "FLOWER_PORT",
    "PROJECTOR_METRICS_PORT",
    "RELAY_METRICS_PORT",
    "PROJECTION_METRICS_PORT",
)


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    """A port nothing is bound to, below the ephemeral range (see the defaults above): a port
    the kernel hands out (bind to 0) may be taken as a client's local port before the server
    that is given it binds."""
    for port in random.sample(range(20000, 32000), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-31999")


def choose_ports(env: dict[str, str]) -> dict[str, str]:
    """Keep each default port if nothing listens there, else take a free one."""
    chosen = dict(env)
    for key in PORTS:
        wanted = os.environ.get(f"BENCH_{key}")
        if wanted:
            chosen[key] = wanted
        elif _port_taken(int(chosen[key])):
            chosen[key] = str(free_port())
    return chosen


def instance_env(tiny: bool) -> dict[str, str]:
    """BENCH_ENV, or for a tiny run the same with its own databases, vhost and beat schedule.

    With TEST_NAMESPACE=<n> (a checkout of its own, as for the tests) both get a suffix too:
    two checkouts at different migration heads must not migrate each other's databases."""
    env = dict(BENCH_ENV)
    suffix = (TINY_SUFFIX if tiny else "") + (f"_ns{_NAMESPACE}" if _NAMESPACE else "")
    env["BENCH_VHOST"] = VHOST + suffix
    if suffix:
        for key in ("AUTH_DB_NAME", "QUERY_DB_NAME", "NOTIFY_DB_NAME", "BEAT_SCHEDULE"):
            env[key] += suffix
        env["RABBITMQ_VHOST"] = env["BENCH_VHOST"]
        env["RATE_LIMIT_KEY_PREFIX"] += suffix
    return env


def _take_lock(name: str) -> None:
    """Wait until no other benchmark process uses the same databases and vhost."""
    import fcntl

    global _lock_file
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    _lock_file = open(DATA_DIR / f"{name}.lock", "w")
    try:
        fcntl.flock(_lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"waiting for another benchmark using {name} to finish", flush=True)
        fcntl.flock(_lock_file, fcntl.LOCK_EX)


def apply(*, tiny: bool = False, **overrides: str) -> dict[str, str]:
    """Switch this process (and every child it starts) to the benchmark environment.

    Also takes the instance's lock (released when the process exits), so two runs never
    empty each other's tables."""
    env = choose_ports({**instance_env(tiny), **overrides})
    check(
        {
            **{k: v for k, v in os.environ.items() if k.endswith("DATABASE_URL") or k == "CELERY_BROKER_URL"},
            **env,
        }
    )
    _take_lock(env["BENCH_VHOST"])
    os.environ.update(env)
    from auth_api.keygen import ensure_master_keys, generate_key_pair  # read no settings

    generate_key_pair(Path(env["JWT_PRIVATE_KEY_FILE"]), Path(env["JWT_PUBLIC_KEY_FILE"]))
    ensure_master_keys(Path(env["DATA_MASTER_KEYS_FILE"]))
    return env
