"""Commands flowing over HTTP while a fault hits: what was answered, what failed and when."""

from __future__ import annotations

import threading
import time
import uuid

import requests

from tests.support.system import PASSWORD


class CommandTraffic:
    """Threads that register a fresh user and log it in, over and over, until stopped.

    A command without an answer (connection refused or reset, a 5xx) is recorded as a failure
    with its time and retried as a new command: it may or may not have committed, so tests
    compare the read model with what the write side committed, not with what was answered."""

    def __init__(self, auth_url: str, tag: str, threads: int = 2) -> None:
        self.auth_url = auth_url
        self.tag = tag
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.registered: dict[str, str] = {}  # user id -> event id, answered 201
        self.logins: list[str] = []  # event ids, answered 200
        self.failures: list[tuple[float, str]] = []
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    @property
    def answered_event_ids(self) -> list[str]:
        with self.lock:
            return [*self.registered.values(), *self.logins]

    def _loop(self) -> None:
        http = requests.Session()
        while not self.stop.is_set():
            body = {"email": f"{self.tag}-{uuid.uuid4().hex[:12]}@example.com", "password": PASSWORD}
            try:
                answer = http.post(f"{self.auth_url}/register", json=body, timeout=30)
                if answer.status_code != 201:
                    raise RuntimeError(f"register answered {answer.status_code}")
                with self.lock:
                    self.registered[answer.json()["id"]] = answer.json()["event_id"]
                answer = http.post(f"{self.auth_url}/login", json=body, timeout=30)
                if answer.status_code != 200:
                    raise RuntimeError(f"login answered {answer.status_code}")
                with self.lock:
                    self.logins.append(answer.json()["event_id"])
            except (requests.RequestException, RuntimeError) as exc:
                with self.lock:
                    self.failures.append((time.monotonic(), str(exc)[:200]))
                http = requests.Session()
                self.stop.wait(0.2)  # client pacing before the next attempt

    def wait_for_more(self, count: int = 3, timeout: float = 60.0) -> None:
        """Block until ``count`` more logins were answered (commands are flowing)."""
        target = len(self.logins) + count
        deadline = time.monotonic() + timeout
        while len(self.logins) < target:
            assert time.monotonic() < deadline, f"no {count} commands answered in {timeout:.0f} s"
            assert any(t.is_alive() for t in self.threads), "the client threads died"
            time.sleep(0.1)  # a bounded poll on the clients' own progress

    def __enter__(self) -> CommandTraffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)
