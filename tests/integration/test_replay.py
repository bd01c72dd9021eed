"""Replaying the whole topic through the live pipeline changes nothing in the read model."""

from __future__ import annotations

import re

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.support.faults import ensure_healthy, log_size
from tests.support.kafka_tools import read_all
from tests.support.pipeline import (
    assert_projected_exactly_once,
    end_offsets,
    produce,
    read_model_snapshot,
    record_document,
    user_histories,
    wait_pipeline_idle,
)
from tests.support.read_model import rows
from tests.support.waiting import wait_until

APPLIED = re.compile(r"projection: applied (\d+), duplicates (\d+), dead-lettered (\d+)")


def _commit_offsets_to_zero(settings) -> None:
    """What `kafka-consumer-groups --reset-offsets --to-earliest` does, for the session group."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": settings.consumer_group,
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = (
            consumer.list_topics(settings.kafka_topic, timeout=30).topics[settings.kafka_topic].partitions
        )
        consumer.commit(
            offsets=[TopicPartition(settings.kafka_topic, p, 0) for p in sorted(partitions)],
            asynchronous=False,
        )
    finally:
        consumer.close()


@pytest.mark.slow
def test_replaying_the_topic_from_offset_zero_changes_nothing(system, settings):
    burst = user_histories(100, logins=3, failures=1, tag="replay", lifecycle=True)  # 1,400 events
    produce(burst.events)
    assert_projected_exactly_once(burst)
    wait_pipeline_idle()
    before = read_model_snapshot()
    ends, committed = end_offsets()
    assert committed == ends
    total = sum(ends.values())
    mark = log_size(system, "projection_worker")
    try:
        system.processes.stop("projector")  # SIGTERM: commits, leaves the group
        _commit_offsets_to_zero(settings)
        assert set(end_offsets()[1].values()) == {0}
        system.processes.start("projector")
        wait_until(
            lambda: end_offsets()[1] == ends, timeout=120, interval=0.5, what=f"all {total} records re-read"
        )
        wait_pipeline_idle()
        after = read_model_snapshot()
        assert after == before

        # The whole topic went through the workers again: every record was a duplicate, but
        # for poison (dead-lettered again, its attempts counted up).
        log = system.processes.log_text("projection_worker")[mark:]
        applied = duplicates = dead = 0
        for match in APPLIED.finditer(log):
            applied, duplicates, dead = (
                applied + int(match[1]),
                duplicates + int(match[2]),
                dead + int(match[3]),
            )
        records = read_all(settings.kafka_bootstrap, settings.kafka_topic)
        record_ids = [(record_document(r.value) or {}).get("id") for r in records]
        known = {
            str(row["event_id"])
            for row in rows(
                "SELECT event_id FROM read_model.processed_events WHERE event_id = ANY(CAST(:ids AS uuid[]))",
                ids=sorted({i for i in record_ids if i}),
            )
        }
        assert len(record_ids) == total
        assert (applied, duplicates, dead) == (
            0,
            sum(i in known for i in record_ids),
            total - sum(i in known for i in record_ids),
        )
    finally:
        ensure_healthy(system)
