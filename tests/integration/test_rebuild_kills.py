"""A rebuild killed anywhere loses nothing: the kill matrix.

``python -m projector rebuild`` is started with ``REBUILD_PAUSE_AT=<phase>`` (it holds at that
phase until killed), killed there with SIGKILL or SIGINT (Ctrl-C) while events keep coming
and the live pipeline applies them, and then run again to completion. After the kill, and
after the rerun, the read model holds every event exactly once in effect (exact counts for
the events produced meanwhile; the earlier users' rows unchanged).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from settings import ROOT
from tests.support.cli import VENV_BIN, projector_cli
from tests.support.environment import child_env
from tests.support.pipeline import (
    Burst,
    assert_projected_exactly_once,
    produce,
    producer,
    read_model_snapshot,
    user_histories,
)
from tests.support.read_model import scalar
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

KILLS = [
    ("before_copy", signal.SIGKILL),
    ("copy", signal.SIGKILL),
    ("catch_up", signal.SIGKILL),  # inside the swap transaction, the live tables locked
    ("swapped", signal.SIGKILL),
    ("copy", signal.SIGINT),
    ("catch_up", signal.SIGINT),
]


class _Trickle(threading.Thread):
    """Produces one user's history (registered, a failure, a login) every few ms until stopped."""

    def __init__(self, tag: str) -> None:
        super().__init__(daemon=True)
        self.tag, self.burst, self.stop, self.error = tag, Burst(), threading.Event(), None

    def run(self) -> None:
        try:
            out = producer()
            while not self.stop.is_set():
                part = user_histories(1, logins=1, failures=1, tag=self.tag, lifecycle=True)
                produce(part.events, out=out)
                self.burst.event_ids.extend(part.event_ids)
                self.burst.users.update(part.users)
                time.sleep(0.05)  # pacing the producer, not waiting for a result
        except BaseException as exc:
            self.error = exc

    def finish(self) -> Burst:
        self.stop.set()
        self.join(60)
        assert self.error is None, self.error
        assert self.burst.event_ids, "no event was produced meanwhile"
        return self.burst


@pytest.fixture(scope="module")
def earlier(system) -> Burst:
    burst = user_histories(100, logins=2, failures=1, tag="before-kills", lifecycle=True)  # 1,300 to copy
    produce(burst.events)
    assert_projected_exactly_once(burst)
    return burst


def _snapshot(burst: Burst) -> dict:
    return read_model_snapshot(user_ids=burst.users, event_ids=burst.event_ids)


def _leftover_schemas() -> int:
    return scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'read_model_%'")


@pytest.mark.parametrize(("phase", "sig"), KILLS, ids=[f"{p}-{s.name}" for p, s in KILLS])
def test_a_rebuild_killed_anywhere_loses_nothing(system, earlier, tmp_path, phase, sig):
    before = _snapshot(earlier)
    output = tmp_path / "rebuild.log"
    trickle = _Trickle(f"kill-{phase}")
    trickle.start()
    try:
        wait_until(lambda: trickle.burst.event_ids, timeout=30, what="events flowing")
        with open(output, "wb") as log:
            rebuild = subprocess.Popen(
                [str(VENV_BIN / "python"), "-m", "projector", "rebuild", "--batch-size", "100"],
                cwd=ROOT,
                env=child_env(REBUILD_PAUSE_AT=phase),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(
                lambda: (
                    f"paused at {phase}" in output.read_text(errors="replace") or rebuild.poll() is not None
                ),
                timeout=180,
                interval=0.1,
                what=f"the rebuild at {phase}",
            )
            assert rebuild.poll() is None, output.read_text()[-3000:]
            os.killpg(rebuild.pid, sig)  # Ctrl-C signals the terminal's whole foreground group
            rebuild.wait(60)
        finally:
            if rebuild.poll() is None:
                os.killpg(rebuild.pid, signal.SIGKILL)
                rebuild.wait(10)
        assert rebuild.returncode != 0, output.read_text()[-3000:]
    finally:
        during = trickle.finish()

    # Afterwards: every event produced meanwhile applied once, the earlier users unchanged.
    assert_projected_exactly_once(during, timeout=120)
    assert _snapshot(earlier) == before

    # Run again (events still coming), to the end.
    again = _Trickle(f"rerun-{phase}")
    again.start()
    try:
        wait_until(lambda: again.burst.event_ids, timeout=30, what="events flowing")
        result = projector_cli("rebuild", "--batch-size", "200", timeout=300)
    finally:
        rerun = again.finish()
    assert result.returncode == 0, result.stderr[-3000:]
    assert_projected_exactly_once(during, timeout=120)
    assert_projected_exactly_once(rerun, timeout=120)
    assert _snapshot(earlier) == before
    assert _leftover_schemas() == 0
    print(f"rebuild killed at {phase} by {sig.name}: {len(during.event_ids)} events during, nothing lost")
