"""celery_config.event_loop: kombu's loop does not sleep while callbacks are queued."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from kombu.asynchronous import Hub

from celery_config.event_loop import WakeOnQueuedCallbacks
from settings import ROOT
from tests.support import environment


class RecordingPoller:
    """The hub's poller, keeping what each poll returned."""

    def __init__(self, poller: Any) -> None:
        self._poller = poller
        self.results: list[list[Any]] = []

    def poll(self, timeout: float) -> Any:
        events = self._poller.poll(timeout)
        self.results.append(list(events or ()))
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._poller, name)


@pytest.fixture
def hub() -> Iterator[Hub]:
    hub = Hub()
    quiet, other_end = socket.socketpair()
    hub.add_reader(quiet, lambda: None)  # never readable: a poll returns only on a timeout or a wakeup
    hub.call_repeatedly(0.05, lambda: None)  # ...and the timeout is short
    hub.poller = RecordingPoller(hub.poller)
    try:
        yield hub
    finally:
        hub.close()
        quiet.close()
        other_end.close()


def _queue_a_chain(hub: Hub, ran: list[str]) -> None:
    # As the AMQP transport does: a queued read gets a message whose task queues its ack.
    def read() -> None:
        ran.append("task")
        hub.call_soon(lambda: ran.append("ack"))

    hub.call_soon(read)


def _with_step(hub: Hub) -> tuple[WakeOnQueuedCallbacks, SimpleNamespace]:
    parent = SimpleNamespace(hub=hub, use_eventloop=True)
    step = WakeOnQueuedCallbacks(parent)
    assert step.include_if(parent)
    step.start(parent)
    return step, parent


def test_kombu_sleeps_through_a_poll_with_the_ack_queued(hub):
    """The behaviour the step exists for. If this fails, kombu wakes itself and the step can go."""
    ran: list[str] = []
    _queue_a_chain(hub, ran)
    hub.run_once()
    assert ran == ["task"]
    assert hub.poller.results == [[]]  # the poll waited for its timeout, the ack queued
    hub.run_once()
    assert ran == ["task", "ack"]


def test_with_the_step_the_poll_returns_at_once_and_the_ack_leaves_next(hub):
    step, parent = _with_step(hub)
    ran: list[str] = []
    _queue_a_chain(hub, ran)
    hub.run_once()
    assert ran == ["task"]
    assert hub.poller.results[0], "the poll should have been woken"
    hub.run_once()
    assert ran == ["task", "ack"]
    step.stop(parent)
    assert not hub.on_tick


def test_with_nothing_queued_the_step_lets_the_loop_sleep(hub):
    _with_step(hub)
    hub.run_once()  # starts the loop; nothing queued
    hub.run_once()
    assert hub.poller.results[-1] == []  # timed out: no busy loop while idle


def test_every_worker_app_starts_the_step_before_its_consumer():
    from celery_config import worker

    for app in (worker.relay, worker.projections, worker.notifications, worker.app):
        assert WakeOnQueuedCallbacks in app.steps["worker"]
    # Built, not started, in a process of its own: a WorkController changes process state.
    code = (
        "from celery.worker import WorkController\n"
        "from celery_config import worker\n"
        "for pool in ('solo', 'threads', 'prefork'):\n"
        "    names = [s.name for s in WorkController(app=worker.relay, pool_cls=pool, concurrency=1).steps]\n"
        "    step = names.index('celery_config.event_loop.WakeOnQueuedCallbacks')\n"
        "    assert step < names.index('celery.worker.components.Consumer'), (pool, names)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment.child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
