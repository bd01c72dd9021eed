"""A worker step that keeps kombu's event loop from sleeping on callbacks it has queued.

kombu 5.7.0's loop (``Hub.create_loop``) runs, each iteration, the callbacks queued before
it started, then polls the sockets with a timeout up to the next timer: up to 2 s, the
worker's event heartbeat. A callback queued while those callbacks run waits out that poll,
because the loop thread does not wake itself. With RabbitMQ this happens on every busy
queue: after each message, the transport queues one more read of the socket
(``kombu.transport.base._make_reader``); when a message has arrived by then, its task runs
inside that queued read, so the task's acknowledgement and events are queued too late.
With ``task_acks_late`` and a prefetch of 1, RabbitMQ sends nothing more until that
acknowledgement. Traced with strace on the relay worker under concurrent logins: the
acknowledgement left 1.93 s after the task ended, and the kicks waiting behind it published
their logins 1.3-2 s late (read-your-writes waits 2 s at most).

This step runs what is queued once more just before the poll (``Hub.on_tick``), as the next
iteration would, only without the sleep in between.
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps
from kombu.asynchronous import Hub

# A callback may queue another (a read that got a message queues the next read); bounded, so
# a callback that always queues one more cannot keep the loop from polling its sockets.
MAX_PASSES = 100


def run_queued_callbacks(hub: Hub) -> None:
    """Run the hub's queued callbacks (and those they queue) as its loop would."""
    for _ in range(MAX_PASSES):
        todo = hub._pop_ready()  # the loop's own step; kombu has no public call for it
        if not todo:
            return
        for item in todo:
            if item:
                item()


class RunQueuedCallbacksBeforePolling(bootsteps.StartStopStep):
    """Adds ``run_queued_callbacks`` to the worker hub's tick callbacks."""

    requires = ("celery.worker.components:Hub",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._tick: Any = None

    def include_if(self, parent: Any) -> bool:
        return bool(parent.use_eventloop)  # pools without kombu's loop have no hub

    def start(self, parent: Any) -> None:
        hub = parent.hub

        def tick() -> None:
            run_queued_callbacks(hub)

        self._tick = tick
        hub.on_tick.add(tick)

    def stop(self, parent: Any) -> None:
        if self._tick is not None:
            parent.hub.on_tick.discard(self._tick)
            self._tick = None
