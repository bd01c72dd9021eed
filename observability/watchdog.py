"""A watchdog for a process's main loop: if the loop stops beating, the process exits.

A Kafka consumer that hangs alive (a librdkafka call that never returns, a broker that
blocks publishers) keeps its partitions, so no other member takes them and nothing is
projected or mailed, while every health check that asks "is the process up?" says yes. A
process that exits instead is restarted by its supervisor (supervisord under ``make run``,
the restart policy under compose) and its partitions move within the session timeout.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# EX_SOFTWARE: the supervisor's log tells a stalled loop from a crash or a signal.
STALLED_EXIT_CODE = 70


class LoopWatchdog:
    """``beat()`` from the loop; ``start()`` a daemon thread that calls ``exit`` when no beat
    came for ``stall_seconds`` (after logging why and every thread's stack)."""

    def __init__(
        self,
        name: str,
        stall_seconds: float,
        *,
        exit: Callable[[int], object] = os._exit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if stall_seconds <= 0:
            raise ValueError("stall_seconds must be positive")
        self.name = name
        self.stall_seconds = stall_seconds
        self._exit = exit
        self._clock = clock
        self._last = clock()
        self._stopped = threading.Event()

    def beat(self) -> None:
        self._last = self._clock()

    def start(self) -> threading.Thread:
        self.beat()
        thread = threading.Thread(target=self._watch, name=f"{self.name}-watchdog", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        check_every = min(5.0, self.stall_seconds / 4)
        while not self._stopped.wait(check_every):
            silent = self._clock() - self._last
            if silent > self.stall_seconds:
                log.critical(
                    "%s: main loop stalled for %.0f s; exiting so that the supervisor restarts it",
                    self.name,
                    silent,
                    extra={"stalled_seconds": round(silent, 1)},
                )
                # Where it hung, for the operator: every thread's stack on stderr (the log file).
                faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
                self._exit(STALLED_EXIT_CODE)
                return
