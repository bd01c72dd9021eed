"""The shared supervisor's stale-process cleanup stops only what a finished run left behind."""

from __future__ import annotations

import os
import subprocess

from services.processes import process_alive, stop_stale_processes

TAG = "unit-test"


def _sleeper(marked: bool) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "CQRS_SUPERVISED"}
    if marked:
        env["CQRS_SUPERVISED"] = TAG
    return subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)


def test_stale_cleanup_kills_by_pid_only_marked_processes_of_gone_owners(tmp_path):
    finished = subprocess.Popen(["true"])
    finished.wait()  # a run that is over: its PID is no longer alive
    orphan, running, stranger = _sleeper(True), _sleeper(True), _sleeper(False)
    pid_file = tmp_path / "supervised.pids"
    pid_file.write_text(
        f"{orphan.pid} {finished.pid}\n{running.pid} {os.getpid()}\n{stranger.pid} {finished.pid}\n"
    )
    try:
        stop_stale_processes(pid_file, TAG)
        orphan.wait(10)
        assert not process_alive(orphan.pid)
        assert process_alive(running.pid), "a run still going keeps its processes"
        assert process_alive(stranger.pid), "a PID without the tag is someone else's"
        assert pid_file.read_text() == f"{running.pid} {os.getpid()}\n"
    finally:
        for proc in (orphan, running, stranger):
            proc.kill()
            proc.wait(10)
