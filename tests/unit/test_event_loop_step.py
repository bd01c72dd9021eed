"""celery_config.event_loop: callbacks queued by queued callbacks run before kombu's loop polls."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from kombu.asynchronous import Hub

from celery_config.event_loop import MAX_PASSES, RunQueuedCallbacksBeforePolling, run_queued_callbacks


@pytest.fixture
def hub() -> Iterator[Hub]:
    hub = Hub()
    quiet, other_end = socket.socketpair()
    hub.add_reader(quiet, lambda: None)  # never readable: each poll waits its full timeout
    hub.call_repeatedly(0.05, lambda: None)  # ...which a timer keeps short
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


def test_kombu_polls_before_running_what_its_callbacks_queued(hub):
    """The behaviour the step exists for. If this fails, kombu runs such callbacks itself
    and the step can go."""
    ran: list[str] = []
    _queue_a_chain(hub, ran)
    hub.run_once()
    assert ran == ["task"]  # the ack waited out the poll
    hub.run_once()
    assert ran == ["task", "ack"]


def test_with_the_step_the_ack_leaves_in_the_same_iteration(hub):
    parent = SimpleNamespace(hub=hub, use_eventloop=True)
    step = RunQueuedCallbacksBeforePolling(parent)
    assert step.include_if(parent)
    step.start(parent)
    ran: list[str] = []
    _queue_a_chain(hub, ran)
    hub.run_once()
    assert ran == ["task", "ack"]
    step.stop(parent)
    assert not hub.on_tick


def test_a_callback_that_always_queues_another_cannot_stop_the_loop_from_polling(hub):
    calls = 0

    def again() -> None:
        nonlocal calls
        calls += 1
        hub.call_soon(again)

    hub.call_soon(again)
    run_queued_callbacks(hub)
    assert calls == MAX_PASSES


def test_every_worker_app_has_the_step():
    from celery_config import worker

    for app in (worker.relay, worker.projections, worker.notifications, worker.app):
        assert RunQueuedCallbacksBeforePolling in app.steps["worker"]
