"""SIGTERM to every kind of process during traffic: each finishes its work, nothing is lost."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.faults import ensure_healthy, wait_for_log
from tests.support.pipeline import Burst, PacedProducer, assert_projected_exactly_once, user_histories
from tests.support.processes import wait_for_port
from tests.support.read_model import auth_engine, rows
from tests.support.system import PASSWORD

pytestmark = pytest.mark.slow


def _terminate_and_restart(system, name: str, *, port: int | None = None, timeout: float = 60) -> int:
    """SIGTERM, wait for a clean exit (rc 0), start again; return the exit code."""
    system.processes.kill(name, signal.SIGTERM)
    rc = system.processes.procs[name].wait(timeout)
    system.processes.start(name)
    if port:
        wait_for_port(port)
    return rc


@pytest.mark.parametrize("process", ["projector", "projection_worker"])
def test_sigterm_to_the_projector_or_a_worker_mid_stream_loses_nothing(system, process):
    ensure_healthy(system)
    burst = user_histories(300, logins=2, failures=1, tag=f"term-{process}")  # 1,200 events
    producer = PacedProducer(burst.events, seconds=6)
    producer.start()
    try:
        time.sleep(2)  # so the fault lands mid-stream (timing a fault, not awaiting a result)
        rc = _terminate_and_restart(system, process)
    finally:
        producer.finish()
    assert rc == 0, f"{process} did not exit cleanly on SIGTERM"
    if process == "projector":
        assert "projector: closed after" in system.processes.log_text("projector")
    counts = assert_projected_exactly_once(burst, timeout=120)
    assert counts["processed_events"] == 1200


def test_sigterm_to_the_write_api_finishes_the_requests_it_accepted(system):
    """Requests in flight at SIGTERM complete; every committed registration is projected.

    A connection refused or reset while the server is down is the client's to retry; what
    matters is that no answered request failed and no committed command was lost.
    """
    ensure_healthy(system)
    port = int(system.auth_url.rsplit(":", 1)[1])
    attempted, answered, cut = [], [], []
    lock = threading.Lock()
    stop_at = time.monotonic() + 8

    def client() -> None:
        while time.monotonic() < stop_at:
            email = f"term-api-{uuid.uuid4().hex[:12]}@example.com"
            with lock:
                attempted.append(email)
            try:
                response = requests.post(
                    f"{system.auth_url}/register",
                    json={"email": email, "password": PASSWORD},
                    headers={"Connection": "close"},
                    timeout=30,
                )
            except requests.ConnectionError as exc:
                with lock:
                    cut.append(str(exc)[:200])
                time.sleep(0.05)
                continue
            with lock:
                answered.append(response)

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(client) for _ in range(6)]
        time.sleep(2)  # so SIGTERM lands while requests are in flight
        rc = _terminate_and_restart(system, "auth_api", port=port)
        for future in futures:
            future.result()

    assert rc == 0
    assert {r.status_code for r in answered} == {201}, [r.text for r in answered if r.status_code != 201][:3]
    assert len(answered) > 20
    committed = rows(
        "SELECT id, (SELECT event_id FROM outbox o WHERE o.user_id = u.id) AS event_id"
        " FROM users u WHERE email = ANY(:emails)",
        engine=auth_engine(),
        emails=attempted,
    )
    answered_ids = {r.json()["id"] for r in answered}
    assert answered_ids <= {str(c["id"]) for c in committed}
    burst = Burst()
    for user in committed:
        burst.add_user(user["id"], user["event_id"])
    assert_projected_exactly_once(burst, timeout=120)
    wait_for_log(system, "auth_api", "Handling signal: term", timeout=5)
