"""SIGTERM to every kind of process during traffic: each finishes its work, nothing is lost."""

from __future__ import annotations

import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.environment import TEST_SETTINGS
from tests.support.faults import ensure_healthy
from tests.support.pipeline import Burst, PacedProducer, assert_projected_exactly_once, user_histories
from tests.support.processes import wait_for_port
from tests.support.read_model import auth_engine, rows
from tests.support.system import PASSWORD
from tests.support.waiting import wait_until

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


def _connections_accepted_by(port: int) -> int:
    """Server-side connections on ``port`` that a server process has accepted. One still in the
    listen backlog has no file yet: its inode in /proc/net/tcp is 0."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01" and fields[9] != "0":  # 01: ESTABLISHED
            count += 1
    return count


def test_sigterm_to_the_write_api_finishes_the_requests_it_accepted(system):
    """Every request the write API had accepted when SIGTERM came is answered, none is reset,
    and every committed registration is projected.

    Slow hashing (Argon2id at a high time cost) keeps registrations in flight: as many are sent
    as the API has threads (WEB_CONCURRENCY x WEB_THREADS), and SIGTERM comes once the server
    has accepted all of them and answered none (a gthread worker may queue some behind its busy
    threads: accepted, they must be answered too, within gunicorn's graceful_timeout).
    """
    ensure_healthy(system)
    settings = TEST_SETTINGS
    port = int(system.auth_url.rsplit(":", 1)[1])
    in_flight = settings.web_workers * settings.web_threads
    slow = {"PASSWORD_HASH_METHOD": "argon2id", "ARGON2_TIME_COST": "20"}
    system.processes.stop("auth_api")
    system.processes.start("auth_api", slow)
    wait_for_port(port)
    emails = [f"term-api-{uuid.uuid4().hex[:12]}@example.com" for _ in range(in_flight)]
    answers: dict[str, tuple[float, int, dict]] = {}
    errors: list[str] = []

    def register(email: str) -> None:
        try:
            response = requests.post(
                f"{system.auth_url}/register",
                json={"email": email, "password": PASSWORD},
                headers={"Connection": "close"},
                timeout=60,
            )
            answers[email] = (time.monotonic(), response.status_code, response.json())
        except requests.RequestException as exc:
            errors.append(f"{exc.__class__.__name__}: {str(exc)[:200]}")

    try:
        with ThreadPoolExecutor(in_flight) as pool:
            for email in emails:
                pool.submit(register, email)
            wait_until(
                lambda: _connections_accepted_by(port) >= in_flight,
                timeout=60,
                interval=0.02,
                what=f"{in_flight} requests accepted by the write API",
            )
            assert not answers, "a registration was answered before SIGTERM: hashing is not slow enough"
            terminated_at = time.monotonic()
            system.processes.kill("auth_api", signal.SIGTERM)
            rc = system.processes.procs["auth_api"].wait(60)
    finally:
        system.processes.stop("auth_api")
        system.processes.start("auth_api")
        wait_for_port(port)

    assert rc == 0
    assert not errors, errors  # no reset, no refused connection: every accepted request drained
    assert {status for _, status, _ in answers.values()} == {201}, answers
    assert len(answers) == in_flight
    assert all(at > terminated_at for at, _, _ in answers.values()), "answered before SIGTERM"
    committed = rows(
        "SELECT u.id, o.event_id FROM users u JOIN outbox o ON o.user_id = u.id WHERE u.email = ANY(:emails)",
        engine=auth_engine(),
        emails=emails,
    )
    assert {str(c["id"]) for c in committed} == {body["id"] for _, _, body in answers.values()}
    burst = Burst()
    for user in committed:
        burst.add_user(user["id"], user["event_id"])
    assert_projected_exactly_once(burst, timeout=120)
    assert "Handling signal: term" in system.processes.log_text("auth_api")
