"""The benchmark's processes: the shared supervisor (``services.processes``) on the benchmark's
environment, with its own PID file, and an HTTP readiness check."""

from __future__ import annotations

import http.client
import time
from pathlib import Path

from bench.environment import DATA_DIR
from services import processes
from services.processes import ProcessGroup, wait_for_port

TAG = "bench"
PID_FILE = DATA_DIR / "supervised-bench.pids"


def bench_processes(env: dict[str, str], log_dir: Path) -> ProcessGroup:
    """A supervisor of Procfile processes on ``env`` (the benchmark's, from ``apply()``)."""
    return ProcessGroup(env=dict(env), log_dir=log_dir, pid_file=PID_FILE, tag=TAG)


def stop_stale_processes() -> None:
    """Stop what an interrupted benchmark left running (by PID, if its benchmark is gone)."""
    processes.stop_stale_processes(PID_FILE, TAG)


def wait_celery_ready(procs: ProcessGroup, name: str, timeout: float = 60.0) -> None:
    procs.wait_for_log(name, " ready.", timeout)


def wait_http_ok(port: int, path: str = "/health", timeout: float = 60.0, times: int = 4) -> None:
    """Wait until ``path`` answers 200 ``times`` times in a row (gunicorn's port opens before
    its workers have imported the app; a few answers mean the workers are up)."""
    wait_for_port(port, timeout)
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", path)
            streak = streak + 1 if conn.getresponse().status == 200 else 0
        except (OSError, http.client.HTTPException):
            streak = 0
        finally:
            conn.close()
        if streak >= times:
            return
        time.sleep(0.05)
    raise RuntimeError(f"GET {path} on port {port} did not answer 200 within {timeout} s")
