"""Start, signal and stop the system's processes by PID, with per-process log files."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.procfile import process_definitions
from settings import ROOT
from tests.support.environment import DATA_DIR

VENV_BIN = ROOT / ".venv" / "bin"
# Process-group ids of what a test session started: if pytest itself is killed, the next
# session stops them (by PID, after checking they are still ours).
# Under DATA_DIR, so sessions against different servers (DATA_DIR) never stop each other's.
STALE_PIDS = DATA_DIR / "test-processes.pids"


def stop_stale_processes() -> None:
    if not STALE_PIDS.exists():
        return
    for line in STALE_PIDS.read_text().split():
        pid = int(line)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(ROOT) in cmdline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
    STALE_PIDS.unlink()


def command_line(name: str, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The Procfile's line for ``name`` (ports from ``env``), run from the project's venv."""
    definition = process_definitions(env)[name]
    program = VENV_BIN / definition.argv[0]
    argv = [str(program) if program.exists() else definition.argv[0], *definition.argv[1:]]
    return argv, definition.env


@dataclass
class ProcessGroup:
    env: dict[str, str]
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, extra_env: dict[str, str] | None = None, *, as_name: str | None = None) -> int:
        key = as_name or name
        existing = self.procs.get(key)
        if existing is not None and existing.poll() is None:
            return existing.pid
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{key}.log", "ab")
        command, line_env = command_line(name, self.env)
        env = {**os.environ, **self.env, **line_env, "SERVICE_NAME": key, "PYTHONPATH": str(ROOT)}
        env.update(extra_env or {})
        if as_name and "-n" in command:
            # A second Celery worker of the same kind needs a node name of its own.
            at = command.index("-n") + 1
            command = [*command[:at], f"{as_name.replace('_', '-')}-test@%h", *command[at + 1 :]]
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[key] = proc
        with open(STALE_PIDS, "a") as pids:
            pids.write(f"{proc.pid}\n")
        return proc.pid

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

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
        """SIGKILL the process's whole group (a Celery worker's pool children too) and reap it."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout)
        # Pool children die with the group; wait until none of the group is left.
        deadline = time.monotonic() + timeout
        while _group_alive(proc.pid):
            if time.monotonic() > deadline:
                raise AssertionError(f"process group {proc.pid} ({name}) survived SIGKILL")
            time.sleep(0.05)

    def stop(self, name: str, timeout: float = 30.0) -> int | None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def log_text(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _group_alive(pgid: int) -> bool:
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
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")
