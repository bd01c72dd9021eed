"""The whole system under supervisord, exactly as ``make run`` runs it (``services.supervise``),
on a stack of its own: databases, topic, consumer group, vhost and ports apart from the
session's ``system``, so both can run in one test session."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, create_engine

from services.supervise import write_config
from settings import ROOT, load_settings
from tests.support.environment import DATA_DIR, NAMES, RUN_ID, SUFFIX, TEST_ENV, child_env
from tests.support.kafka_tools import create_topic, delete_topic
from tests.support.notifications import migrate_notify_db
from tests.support.waiting import wait_until

VENV_BIN = ROOT / ".venv" / "bin"
PORT_SHIFT = 50  # namespaces move ports by 100: +50 stays inside this session's range
PORTS = (
    "AUTH_API_PORT",
    "QUERY_API_PORT",
    "FLOWER_PORT",
    "PROJECTOR_METRICS_PORT",
    "RELAY_METRICS_PORT",
    "PROJECTION_METRICS_PORT",
    "NOTIFIER_METRICS_PORT",
    "NOTIFICATION_METRICS_PORT",
    "SMTP_PORT",
)


def supervised_env() -> dict[str, str]:
    vhost = f"cqrs_test{SUFFIX}_sup"
    broker = TEST_ENV["CELERY_BROKER_URL"].rsplit("/", 1)[0]
    # The session's roles, on databases of their own (made by services/postgres.sh setup).
    names = {
        **NAMES,
        "AUTH_DB_NAME": f"auth_test{SUFFIX}_sup",
        "QUERY_DB_NAME": f"query_test{SUFFIX}_sup",
        "NOTIFY_DB_NAME": f"notify_test{SUFFIX}_sup",
    }
    urls = load_settings({k: v for k, v in {**TEST_ENV, **names}.items() if not k.endswith("DATABASE_URL")})
    return {
        **TEST_ENV,
        **names,
        **{name: str(int(TEST_ENV[name]) + PORT_SHIFT) for name in PORTS},
        "AUTH_DATABASE_URL": urls.auth_database_url,
        "RELAY_DATABASE_URL": urls.relay_database_url,
        "PROJECTION_DATABASE_URL": urls.projection_database_url,
        "QUERY_DATABASE_URL": urls.query_database_url,
        "NOTIFIER_DATABASE_URL": urls.notifier_database_url,
        "KAFKA_TOPIC": f"user-events-sup-{RUN_ID}",
        "PROJECTOR_GROUP_ID": f"query-projector-sup-{RUN_ID}",
        "CELERY_BROKER_URL": f"{broker}/{vhost}",
        "RELAY_NODE": f"relay-sup{SUFFIX}",
        "PROJECTION_NODE": f"projections-sup{SUFFIX}",
        "NOTIFIER_GROUP_ID": f"notifier-sup-{RUN_ID}",
        "NOTIFICATION_NODE": f"notifications-sup{SUFFIX}",
        "MAIL_DIR": str(DATA_DIR / f"test-mail{SUFFIX}" / f"{RUN_ID}-sup"),
        "BEAT_SCHEDULE": str(DATA_DIR / f"sup-celerybeat-schedule{SUFFIX}"),
    }


@dataclass
class SupervisedRun:
    env: dict[str, str]
    config: Path
    run_dir: Path
    log_dir: Path
    proc: subprocess.Popen[bytes]
    seen: set[int] = field(default_factory=set)  # every child PID observed, for the clean-up

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self.env['AUTH_API_PORT']}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.env['QUERY_API_PORT']}"

    def ctl(self, *args: str) -> str:
        return subprocess.run(
            [str(VENV_BIN / "supervisorctl"), "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout

    def states(self) -> dict[str, tuple[str, int]]:
        """Each program's supervisord state and PID (0 when not running)."""
        found = {}
        for line in self.ctl("status").splitlines():
            words = line.split()
            if len(words) >= 2:
                pid = int(words[3].rstrip(",")) if len(words) > 3 and words[2] == "pid" else 0
                found[words[0]] = (words[1], pid)
        self.seen |= {pid for _, pid in found.values() if pid}
        return found

    def running_pid(self, name: str) -> int:
        state, pid = self.states().get(name, ("", 0))
        return pid if state == "RUNNING" else 0

    def supervisord_log(self) -> str:
        path = self.run_dir / "supervisord.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def engine(self, which: str) -> Engine:
        return create_engine(self.env[f"{which.upper()}_DATABASE_URL"], pool_pre_ping=True)


def _superuser_sql(database: str, *statements: str) -> None:
    for statement in statements:
        subprocess.run(
            ["bash", str(ROOT / "services" / "postgres.sh"), "psql", "-d", "postgres", "-c",
             statement.format(name=database)],
            env=child_env(),
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip


def _prepare(env: dict[str, str]) -> None:
    """Fresh databases (migrated as ``make migrate`` does), the topic, an empty vhost."""
    child = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    for database in (env["AUTH_DB_NAME"], env["QUERY_DB_NAME"], env["NOTIFY_DB_NAME"]):
        _superuser_sql(database, 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    setup = ["bash", str(ROOT / "services" / "postgres.sh"), "setup"]
    subprocess.run(setup, env=child, check=True, capture_output=True, timeout=120)
    for app in ("auth_api", "query_api:create_migration_app()"):
        subprocess.run(
            [str(VENV_BIN / "flask"), "--app", app, "db", "upgrade"],
            cwd=ROOT,
            env=child,
            check=True,
            capture_output=True,
            timeout=120,
        )
    migrate_notify_db(child)
    subprocess.run(setup, env=child, check=True, capture_output=True, timeout=120)  # grants on new tables
    create_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_TOPIC"], 6)
    vhost = env["CELERY_BROKER_URL"].rsplit("/", 1)[1]
    subprocess.run(
        ["bash", str(ROOT / "services" / "rabbitmq.sh"), "vhost", vhost], env=child, check=True, timeout=120
    )
    subprocess.run(
        ["bash", str(ROOT / "services" / "rabbitmq.sh"), "ctl", "purge_queue", "-p", vhost, "projections"],
        capture_output=True,
        timeout=60,
    )


@contextmanager
def supervised_run(base: Path) -> Iterator[SupervisedRun]:
    """supervisord over every Procfile process, started the way ``make run`` starts it."""
    env = supervised_env()
    _prepare(env)
    run_dir, log_dir = base / "supervisor", base / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    config = write_config(env, run_dir, log_dir=log_dir)
    child = {**os.environ, **env, "PYTHONPATH": str(ROOT), "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    with open(log_dir / "supervisord.out", "ab") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "supervisord"), "-n", "-c", str(config)],
            cwd=ROOT,
            env=child,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    run = SupervisedRun(env, config, run_dir, log_dir, proc)
    try:
        yield run
    finally:
        run.states()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for pid in run.seen:  # by PID, and only what this supervisord started
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        delete_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_TOPIC"])
        for database in (env["AUTH_DB_NAME"], env["QUERY_DB_NAME"], env["NOTIFY_DB_NAME"]):
            _superuser_sql(database, 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_all_running(run: SupervisedRun, timeout: float = 120.0) -> dict[str, int]:
    def every_process_running() -> dict[str, int] | None:
        states = run.states()
        if states and all(state == "RUNNING" for state, _ in states.values()):
            return {name: pid for name, (_, pid) in states.items()}
        return None

    return wait_until(every_process_running, timeout=timeout, interval=0.5, what="every process RUNNING")


def sigint_and_wait(run: SupervisedRun, timeout: float = 90.0) -> int:
    """Ctrl-C as a terminal sends it: SIGINT to supervisord; its exit code."""
    run.proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    code = run.proc.wait(timeout)
    assert time.monotonic() - started < timeout
    return code
