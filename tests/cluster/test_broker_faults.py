"""Broker faults on the three-broker cluster (replication factor 3, min.insync.replicas 2).

Commands keep coming over HTTP while brokers die; the write side never waits for Kafka (the
outbox holds the events), and the relay publishes with acks=all, so an event is marked
published only once two brokers have it. Counts are exact: every command the write side
committed is projected once in effect, and the relay's backlog drains to zero.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

import pytest

from tests.support import cluster
from tests.support.environment import DATA_DIR, RUN_ID
from tests.support.faults import ensure_healthy, log_size, wait_for_log
from tests.support.kafka_tools import read_all
from tests.support.pipeline import (
    Burst,
    assert_projected_exactly_once,
    committed_burst,
    record_document,
    unpublished,
)
from tests.support.traffic import CommandTraffic
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow
RESULTS = DATA_DIR / "test-logs" / RUN_ID / "cluster-results.jsonl"


def record(name: str, **figures: object) -> None:
    """The figures of a fault run, kept for the capacity notes (and printed with -s)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"test": name, **figures})
    with RESULTS.open("a") as out:
        out.write(line + "\n")
    print(line)


def copies_in_topic(burst: Burst, settings) -> Counter[str]:
    wanted = {str(e) for e in burst.event_ids}
    found: Counter[str] = Counter()
    for rec in read_all(settings.kafka_bootstrap, settings.kafka_topic, timeout=60):
        document = record_document(rec.value)
        if document and document["id"] in wanted:
            found[document["id"]] += 1
    return found


def healthy_cluster(system) -> None:
    for node in cluster.NODES:
        cluster.broker("start", node)
    wait_until(cluster.all_partitions_led, timeout=90, interval=0.5, what="every partition led")
    ensure_healthy(system, timeout=180)


def test_sigkill_of_the_leading_broker_while_commands_flow(system, settings):
    healthy_cluster(system)
    victim = cluster.busiest_leader()
    led_before = Counter(cluster.partition_leaders().values())[victim]
    tag = f"broker-kill-{uuid.uuid4().hex[:6]}"
    try:
        with CommandTraffic(system.auth_url, tag) as traffic:
            traffic.wait_for_more(20)
            cluster.broker("kill", victim)
            killed_at = len(traffic.answered_event_ids)
            # Leadership moves to the two survivors; commands keep being answered meanwhile.
            wait_until(
                lambda: cluster.all_partitions_led() and victim not in cluster.partition_leaders().values(),
                timeout=60,
                interval=0.5,
                what=f"partitions led by other brokers than {victim}",
            )
            traffic.wait_for_more(40)
            during = len(traffic.answered_event_ids) - killed_at
            cluster.broker("start", victim)
            traffic.wait_for_more(20)
        burst = committed_burst(tag)
        answered = {uuid.UUID(e) for e in traffic.answered_event_ids}
        assert answered <= set(burst.event_ids), "an answered command is not in the outbox"
        counts = assert_projected_exactly_once(burst, timeout=180)
        assert unpublished(burst) == 0
        copies = copies_in_topic(burst, settings)
        assert set(copies) == {str(e) for e in burst.event_ids}, "a committed event is missing in Kafka"
        record(
            "sigkill-leading-broker",
            killed_node=victim,
            partitions_it_led=led_before,
            commands_answered=len(answered),
            answered_while_dead=during,
            failed_requests=len(traffic.failures),
            events_committed=len(burst.event_ids),
            topic_records=sum(copies.values()),
            duplicates_in_topic=sum(copies.values()) - len(copies),
            projected=counts,
        )
    finally:
        healthy_cluster(system)


def test_two_brokers_down_commands_succeed_and_nothing_is_published_until_a_quorum(system, settings):
    healthy_cluster(system)
    tag = f"two-down-{uuid.uuid4().hex[:6]}"
    survivor, *down = cluster.NODES
    try:
        for node in down:
            cluster.broker("kill", node)
        mark = log_size(system, "relay_worker")
        started = time.monotonic()
        with CommandTraffic(system.auth_url, tag) as traffic:
            traffic.wait_for_more(30)
            # The relay tried (acks=all cannot be met by one broker) and marked nothing.
            wait_for_log(system, "relay_worker", "not acknowledged by Kafka", after=mark, timeout=90)
            traffic.wait_for_more(10)
        took = time.monotonic() - started
        burst = committed_burst(tag)
        answered = {uuid.UUID(e) for e in traffic.answered_event_ids}
        assert answered <= set(burst.event_ids)
        assert not traffic.failures, traffic.failures[:3]
        held = unpublished(burst)
        assert held == len(burst.event_ids), f"{len(burst.event_ids) - held} rows published without a quorum"
        for node in down:
            cluster.broker("start", node)
        counts = assert_projected_exactly_once(burst, timeout=240)
        assert unpublished(burst) == 0
        copies = copies_in_topic(burst, settings)
        assert set(copies) == {str(e) for e in burst.event_ids}
        record(
            "two-brokers-down",
            survivor=survivor,
            commands_answered_while_down=len(answered),
            seconds_down=round(took, 1),
            held_in_outbox=held,
            events_committed=len(burst.event_ids),
            topic_records=sum(copies.values()),
            duplicates_in_topic=sum(copies.values()) - len(copies),
            projected=counts,
        )
    finally:
        healthy_cluster(system)
