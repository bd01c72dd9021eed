"""A worker step that keeps kombu's event loop from sleeping on callbacks it has queued.

kombu 5.7.0's loop (``Hub.create_loop``) runs, each iteration, the callbacks queued before
it started, then polls the sockets with a timeout up to the next timer: up to 2 s, the
worker's event heartbeat. A callback queued while those callbacks run waits out that poll,
because the loop thread does not wake itself (``Hub.call_soon`` wakes it only from other
threads). With RabbitMQ this happens on every busy queue: after each message, the transport
queues one more read of the socket (``kombu.transport.base._make_reader``); when a message
has arrived by then, its task runs inside that queued read, so the task's acknowledgement
and events are queued too late. With ``task_acks_late`` and a prefetch of 1, RabbitMQ sends
nothing more until that acknowledgement. Traced with strace on the relay worker under
concurrent logins: the acknowledgement left 1.93 s after the task ended, and the kicks
waiting behind it published their logins 1.3-2 s late (read-your-writes waits 2 s at most).

This step, just before the poll (``Hub.on_tick``), wakes the hub as ``call_soon`` would from
another thread when callbacks are queued: the poll returns at once and the next iteration
runs them, with its timers and the worker's checks in between as usual.
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps
from kombu.asynchronous import Hub


def wake_if_callbacks_queued(hub: Hub) -> None:
    """Make the hub's next poll return at once if callbacks are waiting to run."""
    # kombu's own protocol (Hub.call_soon): one pending wakeup, flagged under the ready lock;
    # the loop drains the waker and clears the flag. kombu has no public call for it.
    waker = hub._waker
    if waker is None:  # the loop has not started
        return
    with hub._ready_lock:
        wake = bool(hub._ready) and not hub._wake_pending
        if wake:
            hub._wake_pending = True
    if wake:
        waker.wake()


class WakeOnQueuedCallbacks(bootsteps.StartStopStep):
    """Adds ``wake_if_callbacks_queued`` to the worker hub's tick callbacks."""

    requires = ("celery.worker.components:Hub",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._tick: Any = None

    def include_if(self, parent: Any) -> bool:
        return bool(parent.use_eventloop)  # pools without kombu's loop have no hub

    def start(self, parent: Any) -> None:
        hub = parent.hub

        def tick() -> None:
            wake_if_callbacks_queued(hub)

        self._tick = tick
        hub.on_tick.add(tick)

    def stop(self, parent: Any) -> None:
        if self._tick is not None:
            parent.hub.on_tick.discard(self._tick)
            self._tick = None
