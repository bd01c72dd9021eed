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


def _kick(kicked_at: float | None, attempt: int = 0) -> dict:
    from celery import current_app

    kwargs = {} if kicked_at is None else {"kicked_at": kicked_at, "attempt": attempt}
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


@pytest.fixture
def follow_ups(monkeypatch: pytest.MonkeyPatch, relay: FakeRelay) -> list[dict]:
    from celery import current_app

    sent: list[dict] = []
    monkeypatch.setattr(current_app.tasks[RELAY_TASK], "apply_async", lambda **options: sent.append(options))
    return sent


@pytest.mark.parametrize(
    "held", [RelayResult(locked_out=True, skipped_shards=1), RelayResult(published=3, skipped_shards=1)]
)
def test_a_kicked_run_that_met_a_held_shard_asks_again_with_the_same_kick(
    relay: FakeRelay, follow_ups: list[dict], held: RelayResult
) -> None:
    kicked_at = time.time()
    relay.next = held
    _kick(kicked_at)
    assert [f["kwargs"] for f in follow_ups] == [{"kicked_at": kicked_at, "attempt": 1}]
    assert follow_ups[0]["countdown"] == tasks.KICK_RETRY_DELAY_S
    # Each follow-up that meets the lock again asks once more, up to the bound; then beat.
    for attempt in range(1, tasks.KICK_RETRIES + 1):
        current = len(follow_ups)
        _kick(kicked_at, attempt)
        assert len(follow_ups) == current + (1 if attempt < tasks.KICK_RETRIES else 0)


def test_a_beat_run_or_a_complete_kicked_run_sends_no_follow_up(
    relay: FakeRelay, follow_ups: list[dict]
) -> None:
    relay.next = RelayResult(locked_out=True, skipped_shards=1)
    _kick(None)  # beat comes again by itself
    relay.next = RelayResult(published=2)
    _kick(time.time())
    assert follow_ups == []

