"""Rate limits over HTTP, counted across API processes in the shared store (Redis).

Two write APIs (each its own gunicorn with two workers) share tight limits: requests spread
over both are counted together, and the one past the limit is a 429 problem with Retry-After
and the IETF RateLimit fields. A third API whose store is unreachable fails open.
"""

from __future__ import annotations

import re
import uuid

import pytest
import requests

from settings import ROOT
from tests.support import environment
from tests.support.environment import TEST_ENV
from tests.support.processes import session_processes, wait_for_port
from tests.support.waiting import wait_until

BASE_PORT = int(TEST_ENV["AUTH_API_PORT"]) + 40
PER_ADDRESS, PER_EMAIL = 6, 3


@pytest.fixture(scope="module")
def apis(test_databases):
    """Ports of two write APIs with tight limits and one whose store is down."""
    group = session_processes(ROOT / ".data" / "test-logs" / environment.RUN_ID)
    tight = {
        "RATE_LIMIT_KEY_PREFIX": f"tight-{uuid.uuid4().hex[:8]}",
        "RATE_LIMIT_PER_ADDRESS": f"{PER_ADDRESS}/minute",
        "RATE_LIMIT_PER_EMAIL": f"{PER_EMAIL}/minute",
        "WEB_CONCURRENCY": "2",
        "RELAY_KICK": "0",
    }
    # Port 1 on localhost: nothing listens, a connection is refused at once.
    store_down = {**tight, "RATE_LIMIT_STORAGE_URL": "redis://127.0.0.1:1/0"}
    names = {"auth_tight_a": tight, "auth_tight_b": tight, "auth_store_down": store_down}
    ports = {}
    try:
        for offset, (name, env) in enumerate(names.items()):
            ports[name] = BASE_PORT + offset
            group.start("auth_api", {**env, "AUTH_API_PORT": str(ports[name])}, as_name=name)
        for port in ports.values():
            wait_for_port(port, timeout=60)
        yield ports, group
    finally:
        group.stop_all()


def _url(ports, name, path):
    return f"http://127.0.0.1:{ports[name]}{path}"


def _assert_limited(response):
    assert response.status_code == 429, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 429 and body["title"] == "Too Many Requests"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 61 and body["retry_after"] == retry_after
    assert re.search(r";r=0;t=\d+", response.headers["RateLimit"])


def test_logins_for_one_email_are_counted_across_processes(apis):
    ports, _ = apis
    email = f"limited-{uuid.uuid4().hex[:8]}@example.com"
    answers = []
    for n in range(PER_EMAIL + 1):  # alternate between the two processes
        name = "auth_tight_a" if n % 2 == 0 else "auth_tight_b"
        answers.append(
            requests.post(
                _url(ports, name, "/login"),
                json={"email": email.upper(), "password": "wrong pass"},
                timeout=30,
            )
        )
    assert [a.status_code for a in answers] == [401] * PER_EMAIL + [429]
    for answer in answers[:-1]:
        assert f'"email-60s";q={PER_EMAIL};w=60' in answer.headers["RateLimit-Policy"]
        assert f'"address-60s";q={PER_ADDRESS};w=60' in answer.headers["RateLimit-Policy"]
    remaining = [
        int(re.search(r'"email-60s";r=(\d+)', a.headers["RateLimit"]).group(1)) for a in answers[:-1]
    ]
    assert remaining == [PER_EMAIL - 1 - n for n in range(PER_EMAIL)]
    _assert_limited(answers[-1])
    # Another email from the same address is still served: the limit was the email's.
    other = requests.post(
        _url(ports, "auth_tight_b", "/login"),
        json={"email": f"x{email}", "password": "wrong pass"},
        timeout=30,
    )
    assert other.status_code == 401


def test_refresh_is_limited_per_address_across_processes(apis):
    ports, _ = apis
    statuses = []
    for n in range(PER_ADDRESS + 1):
        name = "auth_tight_a" if n % 2 == 0 else "auth_tight_b"
        statuses.append(requests.post(_url(ports, name, "/refresh"), timeout=30))
    assert [s.status_code for s in statuses] == [401] * PER_ADDRESS + [429]
    _assert_limited(statuses[-1])


def test_an_unreachable_store_fails_open_with_a_warning(apis):
    ports, group = apis
    email = f"open-{uuid.uuid4().hex[:8]}@example.com"
    # Past the email limit (yet short of the lockout): nothing counts, nothing is refused.
    for _ in range(PER_EMAIL + 1):
        response = requests.post(
            _url(ports, "auth_store_down", "/login"),
            json={"email": email, "password": "wrong pass"},
            timeout=30,
        )
        assert response.status_code == 401, response.text
        assert "RateLimit" not in response.headers
    wait_until(lambda: "rate limit store unreachable" in group.log_text("auth_store_down"), timeout=10)
    log = group.log_text("auth_store_down")
    assert email not in log and "Traceback" not in log
