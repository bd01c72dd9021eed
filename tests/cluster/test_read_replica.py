"""The read API on a streaming replica: read-your-writes waits for the replica's replay, a
replica that lags or is stopped gives 503 with Retry-After, never a stale answer."""

from __future__ import annotations

import pytest

from tests.support import cluster
from tests.support.accounts import signed_up
from tests.support.read_model import read_user
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


def consistent(account) -> dict[str, str]:
    return {"X-Consistency-Token": account.consistency_token}


def test_the_read_api_reads_a_hot_standby(system):
    assert cluster.replica_sql("SELECT pg_is_in_recovery()") == "t"
    alice = signed_up(system)
    me = system.query("/users/me", alice.token, headers=consistent(alice))
    assert me.status_code == 200, me.text
    assert me.json()["login_count"] == 1
    # The read API's connections are on the replica (the primary serves the writers).
    assert int(
        cluster.replica_sql("SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'query_test%'")
    ) > 0


def test_a_paused_replica_never_answers_a_consistency_read_stale(system):
    alice = signed_up(system)
    assert system.query("/users/me", alice.token, headers=consistent(alice)).status_code == 200
    cluster.replica_sql("SELECT pg_wal_replay_pause()")
    try:
        # A pause is requested, then takes effect at the next WAL record.
        wait_until(
            lambda: cluster.replica_sql("SELECT pg_get_wal_replay_pause_state()") == "paused",
            timeout=30,
            interval=0.1,
            what="the replica's replay paused",
        )
        login = system.login(alice.email)
        assert login.status_code == 200
        newer = {"X-Consistency-Token": login.json()["consistency_token"]}
        # The projection applied the login on the primary; the replica has not replayed it.
        wait_until(lambda: (read_user(alice.id) or {}).get("login_count") == 2, what="login projected")
        stale = system.query("/users/me", alice.token, headers=newer)
        assert stale.status_code == 503, stale.text
        assert stale.headers["Retry-After"] == "1"
        # Without a token the replica answers what it has: the older state, as documented.
        plain = system.query("/users/me", alice.token)
        assert plain.status_code == 200 and plain.json()["login_count"] == 1
    finally:
        cluster.replica_sql("SELECT pg_wal_replay_resume()")
    fresh = system.query("/users/me", alice.token, headers=newer)
    assert fresh.status_code == 200 and fresh.json()["login_count"] == 2


def test_a_stopped_replica_gives_503_with_retry_after(system):
    alice = signed_up(system)
    try:
        cluster.replica("stop")
        for headers in (consistent(alice), {}):
            response = system.query("/users/me", alice.token, headers=headers)
            assert response.status_code == 503, response.text
            assert response.headers["Content-Type"] == "application/problem+json"
            assert int(response.headers["Retry-After"]) >= 1
    finally:
        cluster.replica("start")
    back = wait_until(
        lambda: (r := system.query("/users/me", alice.token, headers=consistent(alice))).status_code == 200
        and r,
        timeout=60,
        interval=0.5,
        what="reads served again by the restarted replica",
    )
    assert back.json()["login_count"] == 1
