"""Asking a relay worker to run right after a commit, by task name, off the request path."""

from __future__ import annotations

import logging
import os
import threading
import time

from celery import Celery

from celery_config.app import RELAY_TASK

log = logging.getLogger(__name__)


class RelayKicker:
    """Sends kicks from one background thread per process. Best effort: beat runs the relay
    every ``RELAY_INTERVAL_SECONDS`` anyway.

    With RabbitMQ down, kombu spends about 6 s on a refused connection before giving up, so a
    kick sent in the request path stalled every command for seconds. Here a command only sets
    a flag; kicks that arrive while one is being sent collapse into one more send, which
    still covers their commits because the relay reads whatever is unpublished when it runs.
    """

    def __init__(self, celery_app: Celery) -> None:
        self._celery = celery_app
        self._wanted = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def __call__(self) -> None:
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            with self._lock:  # first kick in this process (or after a fork): start the sender
                if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                    self._wanted = threading.Event()
                    self._pid = os.getpid()
                    self._thread = threading.Thread(target=self._run, name="relay-kicker", daemon=True)
                    self._thread.start()
        self._wanted.set()

    def _run(self) -> None:
        wanted = self._wanted
        while True:
            wanted.wait()
            wanted.clear()  # cleared before sending: a kick set meanwhile triggers one more send
            try:
                # kicked_at: every commit this kick covers happened before it, so a relay run
                # that started reading later has seen them and the relay may skip this kick.
                self._celery.send_task(RELAY_TASK, kwargs={"kicked_at": time.time()}, expires=10, retry=False)
            except Exception as exc:  # broker down must never fail a committed command
                log.warning("relay kick not sent: %s", exc)
