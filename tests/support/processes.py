"""The test session's processes: the shared supervisor (``services.processes``) with the
session's environment, log folder and PID file."""

from __future__ import annotations

from pathlib import Path

from services import processes
from services.processes import ProcessGroup, command_line, wait_for_port
from tests.support.environment import DATA_DIR, TEST_ENV

__all__ = ["ProcessGroup", "command_line", "session_processes", "stop_stale_processes", "wait_for_port"]

TAG = "tests"
# Under DATA_DIR, so sessions against different servers (DATA_DIR) never stop each other's.
PID_FILE = DATA_DIR / "supervised-tests.pids"


def session_processes(log_dir: Path) -> ProcessGroup:
    """A supervisor of processes on the test environment (ports, databases, vhost, topic)."""
    return ProcessGroup(env=dict(TEST_ENV), log_dir=log_dir, pid_file=PID_FILE, tag=TAG)


def stop_stale_processes() -> None:
    """Stop what an interrupted test session left running (by PID, if its pytest is gone)."""
    processes.stop_stale_processes(PID_FILE, TAG)
