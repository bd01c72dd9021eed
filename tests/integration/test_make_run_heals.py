"""``make run`` heals: under its supervisor, a SIGKILLed process comes back, the others keep
serving, every committed command is projected once, and Ctrl-C still stops everything."""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests
from sqlalchemy import text

from services.processes import group_alive
from tests.support.supervised import SupervisedRun, sigint_and_wait, supervised_run, wait_all_running
from tests.support.traffic import CommandTraffic
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

# Every process kind of the Procfile, the write API last (its outage is the only one clients see).
KINDS = (
    "projector",
    "projection_worker",
    "notifier",
    "notification_worker",
    "relay_worker",
    "beat",
    "flower",
    "query_api",
    "auth_api",
)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _committed(run: SupervisedRun) -> dict[str, int]:
    with run.engine("auth").connect() as conn:
        found = dict(conn.execute(text("SELECT event_type, count(*) FROM outbox GROUP BY event_type")).all())
    return {"events": sum(found.values()), **found}


def _projected(run: SupervisedRun) -> dict[str, int]:
    with run.engine("query").connect() as conn:
        row = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM read_model.processed_events),"
                " (SELECT count(*) FROM read_model.users WHERE registered_at IS NOT NULL),"
                " (SELECT coalesce(sum(login_count), 0) FROM read_model.users),"
                " (SELECT count(*) FROM read_model.login_history)"
            )
        ).one()
    return {"events": row[0], "users": row[1], "login_count": row[2], "login_history": row[3]}


def test_make_run_restarts_each_sigkilled_process_while_commands_flow(tmp_path):
    with supervised_run(tmp_path) as run:
        pids = wait_all_running(run)
        assert set(pids) == set(KINDS)
        wait_until(lambda: _answers(run.auth_url) and _answers(run.query_url), timeout=60, what="both APIs")
        auth_down: list[tuple[float, float]] = []
        with CommandTraffic(run.auth_url, "heal") as clients:
            clients.wait_for_more(5)
            for kind in KINDS:
                before = run.states()
                old = before[kind][1]
                killed_at = time.monotonic()
                os.killpg(old, signal.SIGKILL)  # the process and its children (pool, gunicorn workers)
                apis = {"auth_api": run.auth_url, "query_api": run.query_url}
                others = [url for name, url in apis.items() if name != kind]
                # While the killed one is away, the APIs it is not keep answering.
                while not run.running_pid(kind) or run.running_pid(kind) == old:
                    assert all(_answers(url) for url in others), f"an API stopped answering without {kind}"
                    assert time.monotonic() - killed_at < 90, f"{kind} was not restarted"
                    time.sleep(0.2)  # a probe interval, bounded by the assertion above
                if kind == "auth_api":
                    wait_until(lambda: _answers(run.auth_url), timeout=60, what="auth_api answering again")
                    auth_down.append((killed_at, time.monotonic()))
                # Nothing else was restarted: one crash does not take the others down.
                after = run.states()
                assert {n: p for n, (_, p) in after.items() if n != kind} == {
                    n: p for n, (_, p) in before.items() if n != kind
                }
                assert f"exited: {kind} (terminated by SIGKILL; not expected)" in run.supervisord_log()
                clients.wait_for_more(3)
        # Only the write API's own restart may fail a client's command.
        late = [(t, e) for t, e in clients.failures if not any(a <= t <= b + 1 for a, b in auth_down)]
        assert not late, late[:5]
        assert len(clients.registered) > 20

        committed = _committed(run)
        assert committed["UserRegistered"] >= len(clients.registered)
        assert committed["UserLoggedIn"] >= len(clients.logins)
        wait_until(
            lambda: _projected(run)["events"] >= committed["events"],
            timeout=120,
            interval=0.5,
            what="every committed event projected",
        )
        projected = _projected(run)
        assert projected == {
            "events": committed["events"],
            "users": committed["UserRegistered"],
            "login_count": committed["UserLoggedIn"],
            "login_history": committed["UserLoggedIn"] + committed.get("UserLoginFailed", 0),
        }
        with run.engine("query").connect() as conn:
            answered = clients.answered_event_ids
            found = conn.execute(
                text(
                    "SELECT count(*) FROM read_model.processed_events"
                    " WHERE event_id = ANY(CAST(:ids AS uuid[]))"
                ),
                {"ids": answered},
            ).scalar()
        assert found == len(answered), "an answered command never reached the read model"

        # Ctrl-C: supervisord stops every process (SIGTERM, then their groups) and exits cleanly.
        final = {name: pid for name, (_, pid) in run.states().items()}
        assert sigint_and_wait(run) == 0
        for name, pid in final.items():
            assert not group_alive(pid), f"{name} (pid {pid}) survived Ctrl-C"
