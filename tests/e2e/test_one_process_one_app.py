"""Each process builds only its own app: the read API serves with no private key on disk.

The read API is started from its Procfile line, like `make run` starts it, with the private
key path pointing first at nothing, then at a file no key parser can read: a process that
loaded the private key would fail to start (the sabotage check in this test's history: with
``signing=True`` in ``query_api.create_app`` the second case fails).
"""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.support.environment import RUN_ID, TEST_ENV
from tests.support.processes import session_processes, wait_for_port
from tests.support.tokens import mint
from tests.support.waiting import wait_until

PORT = int(TEST_ENV["QUERY_API_PORT"]) + 50


@pytest.mark.parametrize("key_file", ["absent", "unreadable"])
def test_the_read_api_serves_without_loading_the_private_key(test_databases, tmp_path, key_file):
    private = tmp_path / "jwt_private.pem"
    if key_file == "unreadable":
        private.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    processes = session_processes(tmp_path / f"logs-{RUN_ID}")
    processes.start(
        "query_api",
        {"QUERY_API_PORT": str(PORT), "JWT_PRIVATE_KEY_FILE": str(private), "WEB_CONCURRENCY": "1"},
        as_name="query_api_no_key",
    )
    try:
        wait_for_port(PORT, timeout=30)
        url = f"http://127.0.0.1:{PORT}"
        token = mint(str(uuid.uuid4()), ["user"])  # signed by the test session's private key
        [answer] = wait_until(lambda: _get(f"{url}/users/me", token), timeout=30, what="an answer")
        # Verified with the public key (an unknown user: 404, not 401), nothing signed here.
        assert answer.status_code == 404, answer.text
        forged = mint(str(uuid.uuid4()), ["admin"]) + "x"
        [refused] = _get(f"{url}/users", forged)
        assert refused.status_code == 401
        assert processes.alive("query_api_no_key")
        if key_file == "absent":
            assert not private.exists()
    finally:
        processes.stop_all()


def _get(url: str, token: str) -> list[requests.Response]:
    """The answer in a list (a 4xx response is falsy), or nothing while no worker answers."""
    try:
        return [requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)]
    except requests.RequestException:
        return []
