"""Start, signal and stop the system's processes by PID: the one supervisor of tests and benchmarks.

Every process is a Procfile line (``services.procfile``) with ``${VAR:-default}`` taken from
the supervisor's environment, run from the project's venv in a session of its own (so its
PID is its process group: a Celery worker's pool children are stopped with it), logging to
``<log_dir>/<name>.log``.

Each start is recorded as ``<pid> <owner pid>`` in a PID file, and the process carries the
environment variable ``CQRS_SUPERVISED=<tag>``. ``stop_stale_processes`` stops what an
interrupted run left behind: by recorded PID, only if the process still carries the tag (the
PID was not reused) and its owner is gone (a run going on at the same time keeps its own).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.procfile import process_definitions

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
MARKER = "CQRS_SUPERVISED"
# Procfile variables that must differ between two instances of one kind on the same vhost.
NODE_VARIABLES = {
    "relay_worker": "RELAY_NODE",
    "projection_worker": "PROJECTION_NODE",
    "notification_worker": "NOTIFICATION_NODE",
}
# Processes that listen on a port: refuse to start when something else answers there, or a
# readiness check would talk to that other process.
LISTEN_PORTS = {"auth_api": "AUTH_API_PORT", "query_api": "QUERY_API_PORT", "flower": "FLOWER_PORT"}


def command_line(name: str, env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The Procfile's line for ``name`` (variables from ``env``), run from the project's venv."""
    definition = process_definitions(env)[name]
    program = VENV_BIN / definition.argv[0]
    argv = [str(program) if program.exists() else definition.argv[0], *definition.argv[1:]]
    return argv, definition.env


@dataclass
class ProcessGroup:
    """The processes one run started, by name. ``env`` is their environment and the Procfile's
    variables; ``pid_file`` and ``tag`` identify them to a later ``stop_stale_processes``."""

    env: dict[str, str]
    log_dir: Path
    pid_file: Path
    tag: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, extra_env: dict[str, str] | None = None, *, as_name: str | None = None) -> int:
        """Start the Procfile process ``name`` (as ``as_name``, for a second one of a kind)."""
        key = as_name or name
        existing = self.procs.get(key)
        if existing is not None and existing.poll() is None:
            return existing.pid
        variables = {**self.env, **(extra_env or {})}
        node_variable = NODE_VARIABLES.get(name)
        if as_name and node_variable and node_variable not in (extra_env or {}):
            # A second Celery worker of a kind needs a node name of its own.
            variables[node_variable] = f"{variables.get(node_variable, name)}-{as_name.replace('_', '-')}"
        port_variable = LISTEN_PORTS.get(name)
        if port_variable and port_variable in variables:
            _wait_port_free(int(variables[port_variable]), key)
        command, line_env = command_line(name, variables)
        env = {
            **os.environ,
            **variables,
            **line_env,
            **(extra_env or {}),
            "SERVICE_NAME": key,
            "PYTHONPATH": str(ROOT),
            MARKER: self.tag,
        }
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{key}.log", "ab") as log:
            proc = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs[key] = proc
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.pid_file, "a") as pids:
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
        """Wait until ``needle`` is in the process's log; fail early if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text(name):
                return
            if not self.alive(name):
                raise RuntimeError(f"{name} exited:\n{self.log_text(name)[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"{name}: no {needle!r} in its log after {timeout} s")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal the process and, for SIGKILL, its whole session (pool children too)."""
        proc = self.procs[name]
        if proc.poll() is not None:
            return
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)

    def kill_and_wait(self, name: str, timeout: float = 10.0) -> None:
        """SIGKILL the process's whole group and wait until none of it is left."""
        proc = self.procs[name]
        _kill_group(proc.pid)
        proc.wait(timeout)
        deadline = time.monotonic() + timeout
        while group_alive(proc.pid):
            if time.monotonic() > deadline:
                raise AssertionError(f"process group {proc.pid} ({name}) survived SIGKILL")
            time.sleep(0.05)

    def stop(self, name: str, timeout: float = 30.0) -> int | None:
        """SIGTERM, SIGKILL of the session if it outlives ``timeout``; the exit code."""
        proc = self.procs.get(name)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait(10)
        _kill_group(proc.pid)  # a pool child must not outlive its worker
        return proc.returncode

    def stop_all(self, timeout: float = 30.0) -> None:
        """SIGTERM to every process at once, then wait; SIGKILL to each session still alive."""
        procs = list(self.procs.values())
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
            _kill_group(proc.pid)
            if proc.poll() is None:
                proc.wait(10)


def stop_stale_processes(pid_file: Path, tag: str) -> None:
    """SIGKILL the process groups an interrupted run recorded in ``pid_file``; keep the lines
    of runs still going."""
    if not pid_file.exists():
        return
    kept = []
    for line in pid_file.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        pid, owner = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue  # gone
        if f"{MARKER}={tag}".encode() not in environ.split(b"\0"):
            continue  # the PID now belongs to someone else
        if owner and process_alive(owner):
            kept.append(line)
            continue
        _kill_group(pid)
    pid_file.write_text("".join(f"{line}\n" for line in kept))


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def process_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def group_alive(pgid: int) -> bool:
    """True while a live (not zombie) process of the group ``pgid`` is left."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies still count for killpg(0); look for a live member.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _wait_port_free(port: int, name: str, timeout: float = 10.0) -> None:
    # A SIGKILLed server's workers may hold the listening socket a moment after its master.
    deadline = time.monotonic() + timeout
    while not port_free(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: port {port} is taken by another process")
        time.sleep(0.1)


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_free(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")
