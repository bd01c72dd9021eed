"""Promises the README makes, each checked against the running system: exact metric deltas,
readiness during a database outage, per-user order under concurrent logins."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.e2e.test_operations import metric, scrape
from tests.support.environment import TEST_ENV
from tests.support.faults import ensure_healthy, set_query_database_open, superuser_sql
from tests.support.kafka_tools import read_all
from tests.support.pipeline import record_document, register_many, wait_pipeline_idle
from tests.support.read_model import auth_engine, read_user
from tests.support.system import PASSWORD
from tests.support.tokens import mint
from tests.support.waiting import wait_until


def _metrics_url(variable: str) -> str:
    return f"http://127.0.0.1:{TEST_ENV[variable]}/metrics"


PIPELINE_METRICS = {
    # (where, name, labels): each counts every event of a burst once
    "relayed": ("RELAY_METRICS_PORT", "outbox_events_relayed_total", {}),
    "handed_over": ("PROJECTOR_METRICS_PORT", "projector_events_handed_over_total", {}),
    "applied": ("PROJECTION_METRICS_PORT", "projection_events_total", {"outcome": "applied"}),
}


def _pipeline_metrics() -> dict[str, float]:
    return {
        key: metric(scrape(_metrics_url(port)), name, **labels)
        for key, (port, name, labels) in PIPELINE_METRICS.items()
    }


def test_worker_and_projector_metrics_count_a_burst_exactly(system):
    ensure_healthy(system)
    wait_pipeline_idle()  # nothing of an earlier test still moving through the counters
    before = _pipeline_metrics()
    users = register_many(system, 40, "metrics-burst")
    for user in users:
        system.wait_projected(user["id"])
    wait_pipeline_idle()
    after = _pipeline_metrics()
    assert {key: after[key] - before[key] for key in before} == {
        "relayed": 40,
        "handed_over": 40,
        "applied": 40,
    }


def _ready(url: str) -> int:
    return requests.get(f"{url}/ready", timeout=15).status_code


def _set_auth_database_open(allowed: bool) -> None:
    name = auth_engine().url.database
    superuser_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if allowed else "false"}')
    if not allowed:
        superuser_sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            f" WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )


@pytest.mark.parametrize(
    "api, outage",
    [("auth", _set_auth_database_open), ("query", set_query_database_open)],
    ids=["auth_api", "query_api"],
)
def test_ready_is_503_while_the_database_is_away_and_200_after(system, api, outage):
    url = system.auth_url if api == "auth" else system.query_url
    ensure_healthy(system)
    assert _ready(url) == 200
    try:
        outage(False)
        # Every gunicorn process must notice, not just the one that answered first.
        for _ in range(8):
            assert _ready(url) == 503
        assert requests.get(f"{url}/health", timeout=15).status_code == 200  # alive, not ready
        if api == "query":  # a read meets the outage as a 503 problem, never a 500
            token = mint(str(uuid.uuid4()), ["user"])
            for _ in range(8):
                answer = system.query("/users/me", token)
                assert answer.status_code == 503, answer.text
                assert answer.headers["Content-Type"] == "application/problem+json"
                assert answer.headers["Retry-After"]
    finally:
        outage(True)
    wait_until(lambda: all(_ready(url) == 200 for _ in range(8)), timeout=30, what=f"{api} ready again")
    ensure_healthy(system)


def test_concurrent_logins_of_one_user_get_gapless_versions_in_order(system, settings):
    user = system.register()
    logins = 40

    def log_in(_: int) -> str:
        with requests.Session() as http:
            answer = http.post(
                f"{system.auth_url}/login", json={"email": user["email"], "password": PASSWORD}, timeout=60
            )
        assert answer.status_code == 200, answer.text
        return answer.json()["event_id"]

    with ThreadPoolExecutor(16) as pool:
        event_ids = list(pool.map(log_in, range(logins)))
    assert len(set(event_ids)) == logins

    projected = wait_until(
        # Each login is UserLoggedIn then SessionStarted: two versions.
        lambda: (found := read_user(user["id"])) and found["version"] == 2 * logins + 1 and found,
        timeout=60,
        what="every login projected",
    )
    assert projected["login_count"] == logins
    records = sorted(
        (
            (record.partition, record.offset, document)
            for record in read_all(settings.kafka_bootstrap, settings.kafka_topic)
            if (document := record_document(record.value)) and document.get("subject") == user["id"]
        ),
        key=lambda found: (found[0], found[1]),
    )
    assert len({partition for partition, _, _ in records}) == 1, "one user's events in two partitions"
    assert [document["sequence"] for _, _, document in records] == list(range(1, 2 * logins + 2))
    logged_in = [document for _, _, document in records if document["type"] == "UserLoggedIn"]
    assert {document["id"] for document in logged_in} == set(event_ids)
