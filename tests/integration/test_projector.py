"""The projector against real Kafka and RabbitMQ: offsets follow confirmed publishes."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from celery_config.app import make_celery
from event_contract import new_event, serialize_event
from projector.handoff import Projector, celery_publisher, consumer_config
from tests.support.environment import TEST_SETTINGS
from tests.support.kafka_tools import committed_offsets, delete_topic, fresh_topic
from tests.support.waiting import wait_until

UNSET = -1001  # librdkafka's OFFSET_INVALID: nothing committed


@pytest.fixture
def topic_name(settings):
    name = fresh_topic(settings.kafka_bootstrap)
    yield name
    delete_topic(settings.kafka_bootstrap, name)


@pytest.fixture
def probe_queue(broker_vhost):
    """A queue of its own, so no worker consumes what this test publishes."""
    name = f"projections-probe-{uuid.uuid4().hex[:8]}"
    yield name
    with make_celery(TEST_SETTINGS).connection_for_write() as conn:
        conn.default_channel.queue_delete(name)


def _produce(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for n in range(count):
        user = uuid.uuid4()
        event = new_event("UserRegistered", user, 1, {"email": f"p{n}@example.com", "roles": ["user"]})
        producer.produce(topic, key=str(user).encode(), value=serialize_event(event))
    assert producer.flush(30) == 0


def _queued_events(queue: str) -> list[dict]:
    events = []
    with make_celery(TEST_SETTINGS).connection_for_write() as conn:
        channel = conn.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            body = json.loads(message.body)
            events.extend(body[0][0])  # (args, kwargs, embed): args[0] is the batch
    return events


def test_offsets_are_committed_only_after_the_broker_confirmed(settings, topic_name, probe_queue):
    _produce(settings.kafka_bootstrap, topic_name, 300)
    group = f"projector-test-{uuid.uuid4().hex[:8]}"
    real_publish, queue_depth = celery_publisher(TEST_SETTINGS, probe_queue)
    attempts = {"failed": 0, "published": 0}
    seen_uncommitted = []

    def flaky_publish(deliveries):
        # While a batch is being handed over, its offsets must not be committed yet.
        committed = committed_offsets(settings.kafka_bootstrap, group, topic_name)
        seen_uncommitted.append(sum(max(o, 0) for o in committed.values()))
        if attempts["failed"] < 3:
            attempts["failed"] += 1
            raise ConnectionError("broker unavailable (injected)")
        real_publish(deliveries)
        attempts["published"] += len(deliveries)

    projector = Projector(
        consumer=Consumer(consumer_config(settings, **{"group.id": group})),
        topic=topic_name,
        publish=flaky_publish,
        queue_depth=queue_depth,
        batch_size=50,
    )
    stop = threading.Event()
    runner = threading.Thread(target=projector.run, args=(stop,))
    runner.start()
    try:
        wait_until(lambda: attempts["published"] == 300, timeout=60, what="300 events handed over")
        wait_until(
            lambda: sum(committed_offsets(settings.kafka_bootstrap, group, topic_name).values()) == 300,
            timeout=30,
            what="offsets committed",
        )
    finally:
        stop.set()
        runner.join(30)
    assert attempts["failed"] == 3
    # Each check ran before that batch's commit: the committed total never ran ahead.
    assert seen_uncommitted == sorted(seen_uncommitted)
    assert seen_uncommitted[:4] == [0, 0, 0, 0]
    events = _queued_events(probe_queue)
    assert len(events) == 300
    assert len({json.loads(e["value"])["id"] for e in events}) == 300


def test_a_batch_that_was_never_confirmed_is_redelivered(settings, topic_name, probe_queue):
    _produce(settings.kafka_bootstrap, topic_name, 120)
    group = f"projector-test-{uuid.uuid4().hex[:8]}"

    def never(deliveries):
        raise ConnectionError("broker unavailable (injected)")

    first = Projector(
        Consumer(consumer_config(settings, **{"group.id": group})), topic_name, never, batch_size=40
    )
    stop = threading.Event()
    runner = threading.Thread(target=_run_quietly, args=(first, stop))
    runner.start()
    assert first.assigned.wait(30), "no partitions assigned"
    stop.set()
    runner.join(30)
    assert set(committed_offsets(settings.kafka_bootstrap, group, topic_name).values()) == {UNSET}

    publish, _ = celery_publisher(TEST_SETTINGS, probe_queue)
    second = Projector(
        Consumer(consumer_config(settings, **{"group.id": group})), topic_name, publish, batch_size=40
    )
    stop = threading.Event()
    runner = threading.Thread(target=second.run, args=(stop,))
    runner.start()
    try:
        wait_until(lambda: second.events_sent >= 120, timeout=60, what="all 120 events handed over")
    finally:
        stop.set()
        runner.join(30)
    assert sum(committed_offsets(settings.kafka_bootstrap, group, topic_name).values()) == 120
    assert len(_queued_events(probe_queue)) == 120


def _run_quietly(projector: Projector, stop: threading.Event) -> None:
    try:
        projector.run(stop)
    except SystemExit:
        pass  # gave up on the broker while stopping: nothing was committed
