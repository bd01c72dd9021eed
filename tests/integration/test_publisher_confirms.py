"""Publisher confirms in the deployed projector: a batch RabbitMQ nacks is never committed.

A policy caps the session vhost's ``projections`` queue at zero messages with
``overflow: reject-publish``, so RabbitMQ nacks every publish (a consumer waiting changes
nothing). The projector process (the Procfile's line) must keep its offsets where they were
and hand nothing over; once the policy is lifted, every event is projected exactly once.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from settings import ROOT
from tests.e2e.test_operations import metric, scrape
from tests.support.environment import TEST_ENV
from tests.support.faults import ensure_healthy, log_size, wait_for_log
from tests.support.pipeline import (
    VHOST,
    assert_projected_exactly_once,
    end_offsets,
    produce,
    projected_counts,
    user_histories,
    wait_pipeline_idle,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow
POLICY = "test-reject-projections"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(
        ["bash", str(ROOT / "services" / "rabbitmq.sh"), "ctl", *args],
        check=True,
        capture_output=True,
        timeout=60,
    )


@contextmanager
def projections_queue_rejecting() -> Iterator[None]:
    definition = json.dumps({"max-length": 0, "overflow": "reject-publish"})
    _rabbitmqctl("set_policy", "-p", VHOST, POLICY, "^projections$", definition, "--apply-to", "queues")
    try:
        yield
    finally:
        _rabbitmqctl("clear_policy", "-p", VHOST, POLICY)


def _handed_over() -> float:
    url = f"http://127.0.0.1:{TEST_ENV['PROJECTOR_METRICS_PORT']}/metrics"
    return metric(scrape(url), "projector_events_handed_over_total")


def test_a_nacked_hand_over_leaves_the_offsets_uncommitted(system):
    ensure_healthy(system)
    wait_pipeline_idle()
    burst = user_histories(100, logins=2, failures=1, tag="nacked")  # 400 events
    mark = log_size(system, "projector")
    try:
        with projections_queue_rejecting():
            _, committed_before = end_offsets()
            handed_before = _handed_over()
            produce(burst.events)
            wait_for_log(system, "projector", "publish failed", after=mark, timeout=30)
            # Several retries later (or as soon as offsets move), still nacked: nothing committed,
            # nothing counted, nothing applied.
            wait_until(
                lambda: (
                    "retry in 1." in system.processes.log_text("projector")[mark:]
                    or end_offsets()[1] != committed_before
                ),
                timeout=30,
                interval=0.2,
                what="the projector retrying a nacked batch",
            )
            ends, committed = end_offsets()
            assert committed == committed_before, "offsets moved past events RabbitMQ refused"
            assert sum(ends.values()) - sum(committed.values()) >= len(burst.events)
            assert _handed_over() == handed_before
            assert projected_counts(burst)["processed_events"] == 0
        assert_projected_exactly_once(burst, timeout=120)
    finally:
        ensure_healthy(system)
