"""Projectors in one consumer group (cooperative-sticky): one joins mid-stream, another is
SIGKILLed; the partitions move and every event is projected once in effect."""

from __future__ import annotations

import re

import pytest

from tests.support.environment import TEST_ENV
from tests.support.faults import ensure_healthy
from tests.support.pipeline import (
    PacedProducer,
    assert_projected_exactly_once,
    projected_counts,
    user_histories,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow
GOT_PARTITIONS = re.compile(r"projector: assigned \[\d")
GAVE_PARTITIONS = re.compile(r"projector: revoked \[\d")


def test_a_projector_joins_mid_stream_and_another_is_sigkilled(system):
    ensure_healthy(system, timeout=180)
    burst = user_histories(500, logins=2, failures=1, tag="projector-group")  # 2,000 events
    total = len(burst.event_ids)
    feeder = PacedProducer(burst.events, seconds=12, chunks=40)
    second_port = str(int(TEST_ENV["PROJECTOR_METRICS_PORT"]) + 50)
    try:
        feeder.start()
        wait_until(
            lambda: projected_counts(burst)["processed_events"] > 0,
            timeout=60,
            what="the first projector handing over part of the stream",
        )
        mark = len(system.processes.log_text("projector"))
        system.processes.start("projector", {"PROJECTOR_METRICS_PORT": second_port}, as_name="projector_2")
        # The newcomer gets partitions, and the first gives up only those (cooperative).
        wait_until(
            lambda: GOT_PARTITIONS.search(system.processes.log_text("projector_2")),
            timeout=60,
            what="partitions assigned to the second projector",
        )
        wait_until(
            lambda: GAVE_PARTITIONS.search(system.processes.log_text("projector")[mark:]),
            timeout=60,
            what="the first projector handing partitions over",
        )
        assert feeder.sent < total, "the stream was over before the second projector joined"
        system.processes.kill_and_wait("projector")
        feeder.finish()
        assert_projected_exactly_once(burst, timeout=180)
    finally:
        system.processes.stop("projector_2")
        ensure_healthy(system)
