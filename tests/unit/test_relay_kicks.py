"""Relay kicks: a kick that a complete relay run already covered is skipped, no other.

The relay task runs eagerly (``apply``) with a fake relay in place of PostgreSQL and Kafka:
what is checked is which kicks lead to a run.
"""

from __future__ import annotations

import time

import pytest

from celery_config.app import RELAY_TASK, make_celery
from outbox_relay import tasks
from outbox_relay.relay import RelayResult
from settings import load_settings


class FakeRelay:
    def __init__(self) -> None:
        self.runs = 0
        self.next = RelayResult()

    def __call__(self, *args: object, **kwargs: object) -> RelayResult:
        self.runs += 1
        return self.next


@pytest.fixture
def relay(monkeypatch: pytest.MonkeyPatch) -> FakeRelay:
    fake = FakeRelay()
    monkeypatch.setattr(tasks, "relay_shards", fake)
    monkeypatch.setattr(tasks, "worker_engine", lambda url: None)
    monkeypatch.setattr(tasks, "_producer", lambda settings: None)
    monkeypatch.setattr(tasks, "_last_complete_run", {})
    app = make_celery(load_settings({}), include_tasks=True)
    app.set_current()
    return fake


def _kick(kicked_at: float | None) -> dict:
    from celery import current_app

    kwargs = {} if kicked_at is None else {"kicked_at": kicked_at}
    return current_app.tasks[RELAY_TASK].apply(kwargs=kwargs).get()


def test_kicks_sent_before_a_complete_run_started_are_skipped_later_ones_run(relay: FakeRelay) -> None:
    before_first_run = time.time() - 1.0
    _kick(None)  # a beat tick: always runs, and completes
    assert relay.runs == 1
    assert _kick(before_first_run) == {"published": 0, "failed": 0, "covered": True}
    assert relay.runs == 1
    _kick(time.time())  # sent after that run started: its commit may be newer, so it runs
    assert relay.runs == 2


@pytest.mark.parametrize(
    "incomplete",
    [RelayResult(locked_out=True), RelayResult(skipped_shards=1), RelayResult(failed=1)],
    ids=["locked-out", "a-shard-held-by-another-relay", "kafka-failed"],
)
def test_a_run_that_did_not_publish_everything_covers_no_kick(
    relay: FakeRelay, incomplete: RelayResult
) -> None:
    before = time.time() - 1.0
    relay.next = incomplete
    _kick(None)
    _kick(before)
    assert relay.runs == 2  # the incomplete run did not cover the earlier kick


def test_the_first_kick_of_a_process_runs(relay: FakeRelay) -> None:
    _kick(time.time() - 60)
    assert relay.runs == 1
