"""Fault injection against the session's system: kill processes, stop servers, block a database.

Every fault is undone in a ``finally`` and the system is checked healthy before the test ends,
because all fault tests share one running system.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import make_url

from settings import ROOT
from tests.support.environment import TEST_SETTINGS
from tests.support.system import System
from tests.support.waiting import wait_until

SERVICES = ROOT / "services"
SYSTEM_PROCESSES = ("relay_worker", "projection_worker", "beat", "projector", "auth_api", "query_api")


def server_running(name: str) -> bool:
    return (
        subprocess.run(["bash", str(SERVICES / f"{name}.sh"), "status"], capture_output=True).returncode == 0
    )


def superuser_sql(sql: str, database: str = "postgres") -> str:
    """Run SQL as the PostgreSQL superuser over the cluster's unix socket (services/postgres.sh psql)."""
    return subprocess.run(
        ["bash", str(SERVICES / "postgres.sh"), "psql", "-d", database, "-At", "-c", sql],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def query_database_name() -> str:
    return make_url(TEST_SETTINGS.query_database_url).database or ""


def set_query_database_open(allowed: bool) -> None:
    name = query_database_name()
    superuser_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if allowed else "false"}')
    if not allowed:
        # Close what is open: the workers find a database that refuses every connection.
        superuser_sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            f" WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )


@contextmanager
def query_database_unavailable() -> Iterator[None]:
    set_query_database_open(False)
    try:
        yield
    finally:
        set_query_database_open(True)


@contextmanager
def server_stopped(system: System, name: str) -> Iterator[None]:
    """``services/<name>.sh stop`` now, ``start`` on leaving, whatever happened in between."""
    try:
        system.server(name, "stop")
        yield
    finally:
        system.server(name, "start")


def ensure_healthy(system: System, timeout: float = 120.0) -> None:
    """Servers up, every process of the system alive, and one registration through the pipeline."""
    for name in ("postgres", "rabbitmq", "kafka"):
        if not server_running(name):
            system.server(name, "start")
    set_query_database_open(True)
    for name in SYSTEM_PROCESSES:
        if not system.processes.alive(name):
            system.processes.start(name)
    system.wait_ready(timeout=timeout)


def wait_for_log(system: System, process: str, text: str, timeout: float = 60.0, after: int = 0) -> None:
    """Wait until ``text`` shows in the process's log past byte ``after`` (a bounded poll)."""
    wait_until(
        lambda: text in system.processes.log_text(process)[after:],
        timeout=timeout,
        interval=0.2,
        what=f"{text!r} in the {process} log",
    )


def log_size(system: System, process: str) -> int:
    return len(system.processes.log_text(process))
