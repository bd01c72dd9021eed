"""Operability: metrics move with traffic, readiness, one request id across every process, Flower."""

from __future__ import annotations

import re
import subprocess
import uuid

import pytest
import requests

from services.processes import command_line
from settings import ROOT
from tests.support.environment import TEST_ENV, TEST_SETTINGS, child_env
from tests.support.waiting import wait_until

# The session's generated credential (SECRETS_DIR/flower), which the system's Flower got too.
FLOWER_USER, _, FLOWER_PASSWORD = (TEST_SETTINGS.flower_basic_auth or "").partition(":")
FLOWER_AUTH = (FLOWER_USER, FLOWER_PASSWORD)


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? ([-0-9.e+]+)$", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def scrape(url: str) -> str:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    return response.text


def test_api_metrics_count_requests_by_route_and_status(system):
    url = f"{system.auth_url}/metrics"
    before = scrape(url)
    system.register()
    system.login(f"nobody-{uuid.uuid4().hex}@example.com")
    after = scrape(url)
    labels = {"service": "auth_api", "route": "/register", "status": "201"}
    assert (
        metric(after, "http_requests_total", **labels) == metric(before, "http_requests_total", **labels) + 1
    )
    failed = {"route": "/login", "status": "401"}
    assert (
        metric(after, "http_requests_total", **failed) == metric(before, "http_requests_total", **failed) + 1
    )
    assert metric(after, "http_request_duration_seconds_count", route="/register") >= 1
    query_metrics = scrape(f"{system.query_url}/metrics")
    assert "dead_letters_open" in query_metrics


def test_readiness_checks_the_databases_and_reports_projection_lag(system):
    auth = requests.get(f"{system.auth_url}/ready", timeout=10)
    assert auth.status_code == 200 and auth.json()["database"] == "ok"
    query = requests.get(f"{system.query_url}/ready", timeout=10)
    assert query.status_code == 200
    assert query.json()["projection_lag_seconds"] is not None
    for base in (system.auth_url, system.query_url):
        assert requests.get(f"{base}/health", timeout=10).json() == {"status": "OK"}


@pytest.mark.slow
def test_outbox_backlog_rises_while_kafka_is_down_and_drains_after(system):
    url = f"{system.auth_url}/metrics"
    system.server("kafka", "stop")
    try:
        ids = [system.register()["id"] for _ in range(20)]
        wait_until(
            lambda: metric(scrape(url), "outbox_unpublished_rows") >= 20, timeout=30, what="backlog >= 20"
        )
        assert metric(scrape(url), "outbox_oldest_unpublished_age_seconds") > 0
    finally:
        system.server("kafka", "start")
    wait_until(
        lambda: metric(scrape(url), "outbox_unpublished_rows") == 0, timeout=90, what="backlog drained"
    )
    for user_id in ids:
        system.wait_projected(user_id, timeout=60)


def test_one_request_id_shows_the_whole_path_in_the_logs(system):
    request_id = f"trace-{uuid.uuid4().hex}"
    user = system.register(**{"X-Request-ID": request_id})
    system.wait_projected(user["id"])

    def every_process_logged() -> list[str] | None:
        missing = [
            name
            for name in ("auth_api", "relay_worker", "projector", "projection_worker")
            if request_id not in system.processes.log_text(name)
        ]
        return None if missing else ["ok"]

    wait_until(every_process_logged, timeout=15, what=f"{request_id} in every process's log")


def test_flower_lists_the_workers_of_both_queues_and_a_task_that_ran(system):
    base = f"http://127.0.0.1:{TEST_ENV['FLOWER_PORT']}"
    assert requests.get(f"{base}/api/workers", timeout=10).status_code == 401  # basic auth on
    user = system.register()
    system.wait_projected(user["id"])

    def workers_by_queue() -> set[str]:
        response = requests.get(
            f"{base}/api/workers", auth=FLOWER_AUTH, params={"refresh": "true"}, timeout=30
        )
        if response.status_code != 200:
            return set()
        queues = set()
        for info in response.json().values():
            queues |= {q["name"] for q in info.get("active_queues", [])}
        return queues >= {"outbox", "projections"} and queues

    wait_until(workers_by_queue, timeout=60, interval=1, what="Flower to see both queues' workers")

    def projection_task_seen() -> bool:
        tasks = requests.get(
            f"{base}/api/tasks", auth=FLOWER_AUTH, params={"taskname": "projections.apply_events"}, timeout=10
        ).json()
        return any(t.get("state") == "SUCCESS" for t in tasks.values())

    wait_until(projection_task_seen, timeout=60, interval=1, what="a successful projection task in Flower")


def test_flower_refuses_default_credentials_and_takes_the_generated_one(system):
    base = f"http://127.0.0.1:{TEST_ENV['FLOWER_PORT']}"
    assert len(FLOWER_PASSWORD) >= 32  # generated, not chosen
    apply_task = f"{base}/api/task/async-apply/outbox.relay"
    for guess in (("admin", "admin"), ("flower", "flower"), (FLOWER_USER, ""), ("admin", FLOWER_PASSWORD)):
        assert requests.get(f"{base}/api/workers", auth=guess, timeout=10).status_code == 401, guess
        # The API that runs tasks is the one that must never open to a guess.
        assert requests.post(apply_task, auth=guess, json={}, timeout=10).status_code == 401, guess
    assert requests.get(f"{base}/api/workers", auth=FLOWER_AUTH, timeout=30).status_code == 200


@pytest.mark.parametrize("credential", [None, "admin:admin", "flower:"])
def test_flower_does_not_start_without_a_strong_credential(tmp_path, credential):
    """The Procfile's Flower line, with no generated password (an empty SECRETS_DIR) and no
    or a guessable FLOWER_BASIC_AUTH: it exits instead of serving."""
    env = child_env(SECRETS_DIR=str(tmp_path), FLOWER_PORT="0")
    env.pop("FLOWER_BASIC_AUTH", None)
    if credential is not None:
        env["FLOWER_BASIC_AUTH"] = credential
    argv, line_env = command_line("flower", env)
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "celery"), *argv[1:]],
        env={**env, **line_env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,  # a Flower that starts serves until killed: this fails the test
    )
    assert result.returncode != 0
    assert "no usable credential" in result.stderr + result.stdout
