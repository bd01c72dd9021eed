"""An HTTP load generator that runs in its own process (no project imports).

Two ways to drive load:
- closed loop: ``concurrency`` threads, each sends its next request when the last answered;
- open loop: requests are scheduled at a fixed rate whatever the answers' speed, and each
  record keeps its scheduled time, so a slow server shows as latency, not as fewer requests.

A request is described by a picklable ``spec`` (see ``_Requests``). Each finished request is a
tuple ``(kind, t_scheduled, t_sent, t_done, status, event_id)`` with wall-clock times
(``time.time()``, the clock PostgreSQL's ``now()`` uses too).
"""

from __future__ import annotations

import http.client
import itertools
import json
import multiprocessing
import queue
import random
import threading
import time
import uuid
from typing import Any

Record = tuple[str, float, float, float, int, str | None]
# fork starts in milliseconds; the child runs only this module's code (no Kafka or DB clients).
_START_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
PASSWORD = "correct horse battery"


class _Requests:
    """Builds requests from a spec: get | register | login | mix (register or login)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.kind = spec["kind"]
        self.emails = spec.get("emails") or []
        self._cycle = itertools.cycle(self.emails) if self.emails else None
        self._lock = threading.Lock()
        self._random = random.Random(spec.get("seed", 1))
        self.prefix = spec.get("prefix", "load")

    def next(self) -> tuple[str, str, str, bytes | None, dict[str, str]]:
        """(kind, method, path, body, headers)"""
        kind = self.kind
        if kind == "mix":
            with self._lock:
                kind = "login" if self._random.random() < self.spec.get("login_share", 0.5) else "register"
        if kind == "get":
            return "get", "GET", self.spec["path"], None, dict(self.spec.get("headers", {}))
        if kind == "register":
            email = f"{self.prefix}-{uuid.uuid4().hex[:16]}@example.com"
        else:
            with self._lock:
                email = next(self._cycle)  # type: ignore[arg-type]
        body = json.dumps({"email": email, "password": self.spec.get("password", PASSWORD)}).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "bench-loadgen/1.0"}
        return kind, "POST", f"/{kind}", body, headers


class _Client(threading.local):
    conn: http.client.HTTPConnection | None = None


def _send(client: _Client, host: str, port: int, request: tuple) -> tuple[int, str | None]:
    kind, method, path, body, headers = request
    for attempt in range(2):
        if client.conn is None:
            client.conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            client.conn.request(method, path, body=body, headers=headers)
            response = client.conn.getresponse()
            data = response.read()
            event_id = None
            if method == "POST" and response.status < 300:
                try:
                    event_id = json.loads(data).get("event_id")
                except ValueError:
                    event_id = None
            if response.getheader("Connection", "").lower() == "close":
                client.conn.close()
                client.conn = None
            return response.status, event_id
        except (OSError, http.client.HTTPException):
            if client.conn is not None:
                client.conn.close()
            client.conn = None
            if attempt == 1:
                return 0, None
    return 0, None


def closed_loop(
    spec: dict[str, Any], host: str, port: int, concurrency: int, duration: float, max_requests: int | None
) -> list[Record]:
    requests = _Requests(spec)
    records: list[Record] = []
    lock = threading.Lock()
    deadline = time.monotonic() + duration
    counter = itertools.count()

    def loop() -> None:
        client = _Client()
        local: list[Record] = []
        while time.monotonic() < deadline:
            if max_requests is not None and next(counter) >= max_requests:
                break
            request = requests.next()
            t_sent = time.time()
            status, event_id = _send(client, host, port, request)
            local.append((request[0], t_sent, t_sent, time.time(), status, event_id))
        with lock:
            records.extend(local)
        if client.conn is not None:
            client.conn.close()

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + 120)
    return records


def open_loop(
    spec: dict[str, Any],
    host: str,
    port: int,
    rate: float,
    duration: float,
    sink: Any,
    workers: int = 64,
) -> None:
    """Send at ``rate`` per second for ``duration`` s; put each record on ``sink`` when done."""
    requests = _Requests(spec)
    jobs: queue.Queue[tuple[float, tuple] | None] = queue.Queue()

    def worker() -> None:
        client = _Client()
        while True:
            job = jobs.get()
            if job is None:
                break
            t_scheduled, request = job
            t_sent = time.time()
            status, event_id = _send(client, host, port, request)
            sink.put((request[0], t_scheduled, t_sent, time.time(), status, event_id))
        if client.conn is not None:
            client.conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    count = int(rate * duration)
    start = time.time() + 0.05
    for i in range(count):
        t_scheduled = start + i / rate
        delay = t_scheduled - time.time()
        if delay > 0:
            time.sleep(delay)
        jobs.put((t_scheduled, requests.next()))
    for _ in threads:
        jobs.put(None)
    for thread in threads:
        thread.join(120)


def _closed_main(args: tuple, results: Any) -> None:
    results.put(closed_loop(*args))


def _open_main(args: tuple, sink: Any) -> None:
    open_loop(*args, sink=sink)
    sink.put(None)  # end of stream


def run_closed(
    spec: dict[str, Any], port: int, concurrency: int, duration: float, max_requests: int | None = None
) -> list[Record]:
    """Closed-loop load from a separate process; returns its records."""
    ctx = multiprocessing.get_context(_START_METHOD)
    results = ctx.Queue()
    proc = ctx.Process(
        target=_closed_main,
        args=((spec, "127.0.0.1", port, concurrency, duration, max_requests), results),
    )
    proc.start()
    try:
        records = results.get(timeout=duration + 180)
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    return records


def start_open(spec: dict[str, Any], port: int, rate: float, duration: float) -> tuple[Any, Any]:
    """Open-loop load from a separate process; read records from the returned queue."""
    ctx = multiprocessing.get_context(_START_METHOD)
    sink = ctx.Queue()
    proc = ctx.Process(target=_open_main, args=((spec, "127.0.0.1", port, rate, duration), sink))
    proc.start()
    return proc, sink
