"""Fault injection on the running system: nothing lost, nothing applied twice.

Each test sends a burst, hits one part of the pipeline (SIGKILL a process, stop a server, lock
out the query database) while the burst is in flight, undoes the fault, and then checks exact
counts for its own users and events once the pipeline is idle again.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict

import pytest

from tests.support.environment import TEST_ENV
from tests.support.faults import (
    ensure_healthy,
    log_size,
    query_database_unavailable,
    server_stopped,
    wait_for_log,
)
from tests.support.kafka_tools import read_all
from tests.support.pipeline import (
    Burst,
    PacedProducer,
    assert_projected_exactly_once,
    committed_burst,
    login_many,
    produce,
    projected_counts,
    record_document,
    register_many,
    unpublished,
    user_histories,
)
from tests.support.processes import wait_for_port
from tests.support.read_model import scalar
from tests.support.traffic import CommandTraffic
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


def _projection_transaction_open() -> bool:
    """A projection worker is inside a query_db transaction (no other writer runs meanwhile)."""
    return bool(
        scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            " AND state IN ('active', 'idle in transaction') AND xact_start IS NOT NULL"
        )
    )


def _http_burst(system, users: int, logins: int, tag: str) -> Burst:
    burst = Burst()
    registered = register_many(system, users, tag)
    for user in registered:
        burst.add_user(user["id"], user["event_id"])
    for login in login_many(system, registered[:logins]):
        burst.add_login(login["id"], login["event_id"])
    return burst


def test_a_sigkilled_projection_worker_loses_and_repeats_nothing(system, settings):
    burst = user_histories(500, logins=3, failures=1, tag="kill-worker")  # 2,500 events
    total = len(burst.event_ids)
    feeder = PacedProducer(burst.events, seconds=4)
    try:
        feeder.start()

        def mid_batch() -> bool:
            done = projected_counts(burst)["processed_events"]
            return 0 < done < total and _projection_transaction_open()

        wait_until(mid_batch, timeout=60, interval=0.02, what="a projection batch in flight")
        system.processes.kill_and_wait("projection_worker")
        at_kill = projected_counts(burst)["processed_events"]
        assert at_kill < total, "the burst was already projected: the kill hit nothing"
        feeder.finish()
        system.processes.start("projection_worker")
        counts = assert_projected_exactly_once(burst)
        assert counts["login_history"] == 2000
    finally:
        ensure_healthy(system)


def test_b_sigkilled_projector_loses_and_repeats_nothing(system, settings):
    burst = user_histories(400, logins=3, failures=1, tag="kill-projector")  # 2,000 events
    total = len(burst.event_ids)
    feeder = PacedProducer(burst.events, seconds=5)
    try:
        feeder.start()
        wait_until(
            lambda: projected_counts(burst)["processed_events"] > 0,
            timeout=60,
            interval=0.05,
            what="the projector handing over part of the burst",
        )
        system.processes.kill_and_wait("projector")
        assert feeder.sent < total, "the stream was over before the kill"
        feeder.finish()
        system.processes.start("projector")
        assert_projected_exactly_once(burst, timeout=120)
    finally:
        ensure_healthy(system)


def test_c_registrations_while_kafka_is_down_are_all_projected_once(system, settings):
    burst = Burst()
    try:
        with server_stopped(system, "kafka"):
            started = time.monotonic()
            registered = register_many(system, 500, "kafka-down")
            logged_in = login_many(system, registered[:50])
            for user in registered:
                burst.add_user(user["id"], user["event_id"])
            for login in logged_in:
                burst.add_login(login["id"], login["event_id"])
            took = time.monotonic() - started
            # Every command committed; none of its events could be published.
            assert unpublished(burst) == 550, "rows were marked published while Kafka was down"
        counts = assert_projected_exactly_once(burst, timeout=180)
        assert counts["users"] == 500 and counts["login_count"] == 50
        assert took < 60, f"commands slowed down by the Kafka outage: {took:.0f} s for 550"
        # Drained in order: each user's events once each, in one partition, in version order.
        wanted = {str(e) for e in burst.event_ids}
        by_user = defaultdict(list)
        for record in sorted(
            read_all(settings.kafka_bootstrap, settings.kafka_topic), key=lambda r: (r.partition, r.offset)
        ):
            document = record_document(record.value)
            if document and document["id"] in wanted:
                by_user[document["subject"]].append((record.partition, document["sequence"], document["id"]))
        ids = Counter(i for records in by_user.values() for _, _, i in records)
        assert len(ids) == 550 and set(ids.values()) == {1}, "an outbox row reached Kafka twice"
        for records in by_user.values():
            assert len({p for p, _, _ in records}) == 1
            assert [s for _, s, _ in records] == list(range(1, len(records) + 1))
    finally:
        ensure_healthy(system)


def test_d_query_database_unavailable_for_ten_seconds(system, settings):
    burst = user_histories(200, logins=3, failures=1, tag="db-down")  # 1,000 events
    half = len(burst.events) // 2
    mark = log_size(system, "projection_worker")
    try:
        produce(burst.events[:half])
        with query_database_unavailable():
            locked_out_at = time.monotonic()
            produce(burst.events[half:])
            wait_for_log(system, "projection_worker", "transient database error", after=mark, timeout=30)
            # Hold the outage for about 10 s (the fault itself, not a wait for a result).
            time.sleep(max(0.0, 10 - (time.monotonic() - locked_out_at)))
        assert_projected_exactly_once(burst, timeout=120)
    finally:
        ensure_healthy(system)


def test_d_rabbitmq_restart_during_a_burst(system, settings):
    burst = user_histories(200, logins=3, failures=1, tag="rabbit-restart")  # 1,000 events to Kafka
    feeder = PacedProducer(burst.events, seconds=8)
    mark = log_size(system, "projector")
    try:
        feeder.start()
        with server_stopped(system, "rabbitmq"):
            # Commands keep working, at full speed, with the broker down (the kick is best effort).
            started = time.monotonic()
            for user in register_many(system, 50, "rabbit-down"):
                burst.add_user(user["id"], user["event_id"])
            took = time.monotonic() - started
            wait_for_log(system, "projector", "publish failed", after=mark, timeout=30)
        assert took < 10, f"50 registrations took {took:.0f} s with RabbitMQ down"
        feeder.finish()
        assert_projected_exactly_once(burst, timeout=180)
    finally:
        ensure_healthy(system)


def test_h_a_second_relay_worker_publishes_nothing_twice(system, settings):
    marks = {name: log_size(system, name) for name in ("relay_worker",)}
    try:
        system.processes.start("relay_worker", as_name="relay_worker_2")
        wait_for_log(system, "relay_worker_2", "ready.", timeout=60)
        marks["relay_worker_2"] = log_size(system, "relay_worker_2")

        def both_relays_published() -> bool:
            return all(
                "relay: published" in system.processes.log_text(name)[mark:] for name, mark in marks.items()
            )

        burst = _http_burst(system, 300, 50, "two-relays")  # 350 events
        for _ in range(10):  # more commands until each relay worker has published some
            if both_relays_published():
                break
            more = _http_burst(system, 20, 0, "two-relays")
            burst.users.update(more.users)
            burst.event_ids.extend(more.event_ids)
        assert both_relays_published(), "one relay worker never published: nothing was tested"
        wait_until(lambda: unpublished(burst) == 0, timeout=60, what="every outbox row published")
        counts = Counter()
        for record in read_all(settings.kafka_bootstrap, settings.kafka_topic):
            document = record_document(record.value)
            if document:
                counts[document["id"]] += 1
        sent = Counter({str(e): counts[str(e)] for e in burst.event_ids})
        assert len(sent) == len(burst.event_ids) >= 350
        assert set(sent.values()) == {1}, [i for i, n in sent.items() if n != 1][:5]
        assert_projected_exactly_once(burst)
    finally:
        system.processes.stop("relay_worker_2")
        ensure_healthy(system)


@pytest.mark.parametrize("process", ["relay_worker", "beat", "auth_api"])
def test_e_sigkill_of_a_write_side_process_while_commands_flow_loses_nothing(system, process):
    ensure_healthy(system)
    tag = f"kill-{process.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    mark = log_size(system, "relay_worker")
    with CommandTraffic(system.auth_url, tag) as traffic:
        traffic.wait_for_more(5)
        if process == "relay_worker":  # kill a relay that is publishing this traffic
            wait_for_log(system, "relay_worker", "relay: published", after=mark, timeout=30)
        system.processes.kill_and_wait(process)
        if process == "auth_api":
            failures = len(traffic.failures)
            wait_until(lambda: len(traffic.failures) > failures, timeout=30, what="a command refused")
        else:
            traffic.wait_for_more(5)  # the write side answers without it
        if process == "relay_worker":
            assert unpublished(committed_burst(tag)), (
                "no command waited for the dead relay: the kill tested nothing"
            )
        system.processes.start(process)
        if process == "auth_api":
            wait_for_port(int(TEST_ENV["AUTH_API_PORT"]))
        traffic.wait_for_more(5)
    burst = committed_burst(tag)
    answered = {uuid.UUID(e) for e in traffic.answered_event_ids}
    assert answered <= set(burst.event_ids), "an answered command is not in the outbox"
    assert_projected_exactly_once(burst, timeout=120)
    ensure_healthy(system)
