"""The system's processes as the Procfile runs them, on the benchmark's names, ports and PIDs.

Each process gets its own session; it is stopped by its PID (SIGTERM, then SIGKILL of its
session). PIDs are recorded in ``.data/bench-processes.pids`` so that a run killed half-way
is cleaned up by the next one, again by PID and only if the process carries the bench marker.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.environment import DATA_DIR, MARKER, ROOT

VENV_BIN = ROOT / ".venv" / "bin"
PID_FILE = DATA_DIR / "bench-processes.pids"


def _python() -> str:
    candidate = VENV_BIN / "python"
    return str(candidate) if candidate.exists() else "python3"


def _tool(name: str) -> str:
    candidate = VENV_BIN / name
    return str(candidate) if candidate.exists() else name


def command(name: str, env: dict[str, str], *, concurrency: int = 1, index: int = 0) -> list[str]:
    """The Procfile's command line of ``name``.

    ``BENCH_CELERY_APP`` in ``env`` points the Celery workers at bench.patched_celery, to
    measure a prototype of a proposed change.
    """
    celery = [_tool("celery"), "-A", env.get("BENCH_CELERY_APP", "celery_config")]
    gunicorn = [_tool("gunicorn"), "-c", "gunicorn.conf.py"]
    commands = {
        "auth_api": [*gunicorn, "--bind", f"127.0.0.1:{env['AUTH_API_PORT']}", "wsgi:auth_app"],
        "query_api": [*gunicorn, "--bind", f"127.0.0.1:{env['QUERY_API_PORT']}", "wsgi:query_app"],
        "relay_worker": [
            *celery,
            "worker",
            "-Q",
            "outbox",
            "-n",
            "relay-bench@%h",
            "--concurrency",
            str(concurrency),
        ],
        "projection_worker": [
            *celery,
            "worker",
            "-Q",
            "projections",
            "-n",
            f"projections-bench-{index}@%h",
            "--concurrency",
            str(concurrency),
        ],
        "beat": [*celery, "beat", "--schedule", str(DATA_DIR / "bench-celerybeat-schedule")],
        "projector": [_python(), "-m", "projector"],
    }
    return commands[name]


def stop_stale_processes() -> None:
    """Stop what an interrupted benchmark left running: by recorded PID, and only processes
    that carry the bench marker and whose benchmark (the owner PID beside it) is gone, so a
    benchmark running at the same time keeps its processes."""
    if not PID_FILE.exists():
        return
    kept = []
    for line in PID_FILE.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        pid, owner = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue  # gone
        if f"{MARKER}=1".encode() not in environ:
            continue  # the PID now belongs to someone else
        if owner and _alive(owner):
            kept.append(line)  # its benchmark still runs
            continue
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    PID_FILE.write_text("".join(f"{line}\n" for line in kept))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@dataclass
class Processes:
    env: dict[str, str]
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(
        self,
        name: str,
        *,
        as_name: str | None = None,
        extra_env: dict[str, str] | None = None,
        concurrency: int = 1,
        index: int = 0,
    ) -> int:
        key = as_name or name
        port_key = {"auth_api": "AUTH_API_PORT", "query_api": "QUERY_API_PORT"}.get(name)
        if port_key and not port_free(int(self.env[port_key])):
            raise RuntimeError(f"{name}: port {self.env[port_key]} is taken by another process")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{key}.log", "ab")
        metrics = {}
        if name in ("relay_worker", "projection_worker"):
            # As the Procfile: each worker serves its metrics, here on a free port of its own.
            from bench.environment import free_port

            metrics["CELERY_METRICS_PORT"] = str(free_port())
        env = {
            **os.environ,
            **self.env,
            **metrics,
            **(extra_env or {}),
            "SERVICE_NAME": key,
            "PYTHONPATH": str(ROOT),
            MARKER: "1",
        }
        proc = subprocess.Popen(
            command(name, env, concurrency=concurrency, index=index),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs[key] = proc
        PID_FILE.parent.mkdir(parents=True, exist_ok=True)
        with open(PID_FILE, "a") as pids:
            pids.write(f"{proc.pid} {os.getpid()}\n")
        return proc.pid

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def log_text(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_log(self, name: str, needle: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text(name):
                return
            if not self.alive(name):
                raise RuntimeError(f"{name} exited:\n{self.log_text(name)[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"{name}: no {needle!r} in its log after {timeout} s")

    def wait_celery_ready(self, name: str, timeout: float = 60.0) -> None:
        self.wait_for_log(name, " ready.", timeout)

    def stop(self, name: str, timeout: float = 20.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        # A celery worker's pool children share its session: make sure none outlives it.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass

    def stop_all(self, timeout: float = 20.0) -> None:
        """SIGTERM to all at once, then wait; SIGKILL to each session still alive after it."""
        procs = list(self.procs.values())
        self.procs.clear()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers and pool children
            except OSError:
                pass
            if proc.poll() is None:
                proc.wait(10)


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def wait_http_ok(port: int, path: str = "/health", timeout: float = 60.0, times: int = 4) -> None:
    """Wait until ``path`` answers 200 ``times`` times in a row (gunicorn's port opens before
    its workers have imported the app; a few answers mean the workers are up)."""
    import http.client

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
