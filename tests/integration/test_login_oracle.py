"""No oracle on login: over HTTP, on the real auth database, a registered email and an unknown
one get the same answer in every state (fresh, failing, locking, locked, the right password
while locked) and cost the same hash work."""

from __future__ import annotations

import re
import uuid

import pytest

PASSWORD = "correct horse battery"
# Request-specific: the date, the request id, and the clock part (t=) of RateLimit.
VARYING = {"Date", "X-Request-ID"}


@pytest.fixture
def client(auth_app):
    return auth_app.test_client()


@pytest.fixture
def hash_work(auth_app, monkeypatch):
    """Counts the write side's hash computations (a counter around the real hasher)."""
    hasher = auth_app.extensions["write_side"].hasher
    counts = {"verify": 0, "hash": 0}
    for name in counts:
        real = getattr(hasher, name)

        def counted(*args, _real=real, _name=name):
            counts[_name] += 1
            return _real(*args)

        monkeypatch.setattr(hasher, name, counted)
    return counts


def _answer(client, hash_work, email, password, address):
    before = dict(hash_work)
    response = client.post(
        "/login",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": address},
        headers={"User-Agent": "oracle-test"},
    )
    body = response.get_json()
    body.pop("instance", None)
    headers = {k: v for k, v in response.headers.items() if k not in VARYING}
    if "RateLimit" in headers:
        headers["RateLimit"] = re.sub(r";t=\d+", "", headers["RateLimit"])
    retry_after = headers.pop("Retry-After", None)
    body_retry = body.pop("retry_after", None)
    work = {k: hash_work[k] - before[k] for k in hash_work}
    return (response.status_code, body, headers, work), (retry_after, body_retry)


def test_a_known_and_an_unknown_email_answer_alike_in_every_state(client, auth_app, hash_work):
    known = f"oracle-{uuid.uuid4().hex[:10]}@example.com"
    assert client.post("/register", json={"email": known, "password": PASSWORD}).status_code == 201
    unknown = f"oracle-{uuid.uuid4().hex[:10]}@example.com"
    max_failures = auth_app.extensions["write_side"].lockout.max_failures
    # Each email from an address of its own, so its rate-limit counters move in step.
    addresses = {known: "198.51.100.1", unknown: "198.51.100.2"}
    steps = ["wrong password"] * (max_failures + 1) + [PASSWORD]
    statuses = []
    for number, password in enumerate(steps):
        (answer_known, clock_known) = _answer(client, hash_work, known, password, addresses[known])
        (answer_unknown, clock_unknown) = _answer(client, hash_work, unknown, password, addresses[unknown])
        assert answer_known == answer_unknown, f"step {number}"
        # Retry-After counts down a clock: the two requests are a few ms apart, at most 1 s off.
        assert (clock_known[0] is None) == (clock_unknown[0] is None)
        if clock_known[0] is not None:
            assert abs(int(clock_known[0]) - int(clock_unknown[0])) <= 1
            assert abs(clock_known[1] - clock_unknown[1]) <= 1
        statuses.append(answer_known[0])
        assert answer_known[3] == {"verify": 1, "hash": 0}, f"step {number}: one verification each"
    # fresh and failing: 401; the failure that reaches the limit and all after it: 429.
    assert statuses == [401] * (max_failures - 1) + [429] * 3
