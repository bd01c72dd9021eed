"""The projector's hand-off with a fake consumer: commits follow confirmed publishes, and a
deep projections queue pauses consumption while the consumer keeps polling."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field

from confluent_kafka import TopicPartition

from event_contract import Delivery, new_event, serialize_event
from projector.handoff import Projector

TOPIC = "user-events"


@dataclass
class FakeMessage:
    _partition: int
    _offset: int
    _value: bytes
    _key: bytes

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return self._key

    def headers(self) -> list[tuple[str, bytes]]:
        return [("request_id", b"req-1")]

    def error(self) -> None:
        return None


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeConsumer:
    """One partition of messages; poll() advances the clock when it has nothing to give."""

    messages: list[FakeMessage]
    clock: FakeClock
    position: int = 0
    paused: bool = False
    commits: list[list[tuple[int, int]]] = field(default_factory=list)
    pauses: int = 0
    resumes: int = 0
    polls_while_paused: int = 0
    closed: bool = False

    def subscribe(self, topics, on_assign=None, on_revoke=None) -> None:
        on_assign(self, [TopicPartition(TOPIC, 0)])

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, 0)]

    def poll(self, timeout: float) -> FakeMessage | None:
        if self.paused:
            self.polls_while_paused += 1
        if self.paused or self.position >= len(self.messages):
            # Like librdkafka, a poll takes at least a millisecond of the clock.
            self.clock.now += max(timeout, 0.001)
            return None
        self.position += 1
        return self.messages[self.position - 1]

    def consume(self, count: int, timeout: float) -> list[FakeMessage]:
        if self.paused:
            return []
        taken = self.messages[self.position : self.position + count]
        self.position += len(taken)
        return taken

    def pause(self, partitions) -> None:
        self.paused, self.pauses = True, self.pauses + 1

    def resume(self, partitions) -> None:
        self.paused, self.resumes = False, self.resumes + 1

    def seek(self, partition: TopicPartition) -> None:
        self.position = partition.offset

    def store_offsets(self, offsets) -> None:
        # What librdkafka then commits (in the background, on revoke and on close).
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])

    def commit(self, *args, **kwargs) -> None:
        raise AssertionError("a synchronous commit can stall the consumer; offsets are stored")

    def close(self) -> None:
        self.closed = True


def _messages(count: int) -> list[FakeMessage]:
    found = []
    for offset in range(count):
        user = uuid.uuid4()
        event = new_event("UserRegistered", user, 1, {"email": f"u{offset}@example.com", "roles": ["user"]})
        found.append(FakeMessage(0, offset, serialize_event(event), str(user).encode()))
    return found


def _projector(consumer: FakeConsumer, publish, depth=lambda: 0, batch_size: int = 10) -> Projector:
    return Projector(
        consumer=consumer,  # type: ignore[arg-type]
        topic=TOPIC,
        publish=publish,
        queue_depth=depth,
        batch_size=batch_size,
        max_queued_tasks=100,
        poll_timeout=0.1,
        clock=consumer.clock,
    )


def test_batches_carry_the_records_and_offsets_follow_each_confirmed_publish():
    clock = FakeClock()
    consumer = FakeConsumer(_messages(25), clock)
    published: list[list[dict]] = []

    def publish(batch: list[dict]) -> None:
        published.append(batch)

    _projector(consumer, publish).run(threading.Event(), idle_exit_after=1.0)
    assert [len(b) for b in published] == [10, 10, 5]
    assert consumer.commits == [[(0, 10)], [(0, 20)], [(0, 25)]]  # last offset + 1
    first = Delivery.from_dict(published[0][0])
    assert first.source == f"{TOPIC}/0/0" and first.request_id == "req-1"
    assert first.key == str(uuid.UUID(first.key)) and consumer.closed


def test_a_failed_publish_commits_nothing_and_the_same_batch_is_retried():
    clock = FakeClock()
    consumer = FakeConsumer(_messages(5), clock)
    attempts: list[list[str]] = []

    def publish(batch: list[dict]) -> None:
        attempts.append([d["source"] for d in batch])
        if len(attempts) < 3:
            assert consumer.commits == []  # nothing committed while the hand-off is unconfirmed
            raise ConnectionError("broker nacked")

    _projector(consumer, publish).run(threading.Event(), idle_exit_after=1.0)
    assert len(attempts) == 3 and attempts[0] == attempts[1] == attempts[2]
    assert consumer.commits == [[(0, 5)]]


def test_a_deep_queue_pauses_consumption_but_polling_goes_on_then_it_resumes():
    clock = FakeClock()
    consumer = FakeConsumer(_messages(30), clock)
    depth = {"value": 500}  # far above max_queued_tasks=100
    published: list[int] = []

    def queue_depth() -> int:
        # The workers drain the queue while the projector waits.
        if consumer.polls_while_paused >= 20:
            depth["value"] = 40  # at or below half the limit: resume
        return depth["value"]

    def publish(batch: list[dict]) -> None:
        published.append(len(batch))

    beats: list[float] = []
    projector = _projector(consumer, publish, queue_depth)
    projector.beat = lambda: beats.append(clock.now)
    projector.run(threading.Event(), idle_exit_after=5.0)
    assert consumer.pauses >= 1 and consumer.resumes >= 1
    assert consumer.polls_while_paused >= 20  # heartbeats go on while paused
    # The watchdog hears the loop while it waits paused, too: never a second without a beat.
    assert len(beats) >= consumer.polls_while_paused
    assert max(b - a for a, b in zip(beats, beats[1:], strict=False)) <= 1.0
    assert sum(published) == 30 and consumer.commits[-1] == [(0, 30)]


def test_an_unknown_queue_depth_never_pauses():
    clock = FakeClock()
    consumer = FakeConsumer(_messages(12), clock)
    projector = _projector(consumer, lambda batch: None, depth=lambda: None)
    projector.run(threading.Event(), idle_exit_after=1.0)
    assert consumer.pauses == 0 and projector.events_sent == 12
