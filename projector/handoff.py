"""Kafka consumer that hands event batches to Celery and commits only what is confirmed.

Offsets are stored per partition (last offset + 1) only after RabbitMQ confirmed the task
that carries those events; librdkafka commits what is stored (see ``consumer_config``). A
crash before the commit means redelivery, never loss; the projection is idempotent, so
redelivery changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from celery_config.app import PROJECT_TASK, PROJECTIONS_QUEUE, PUBLISH_TIMEOUT_SECONDS, make_celery
from event_contract import Delivery, next_offsets
from observability.metrics import EVENTS_HANDED_OVER
from settings import Settings

log = logging.getLogger(__name__)

Publish = Callable[[list[dict[str, Any]]], None]
DEPTH_CHECK_SECONDS = 1.0
QueueDepth = Callable[[], int | None]


def consumer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": settings.consumer_group,
        "client.id": "projector",
        # Only offsets stored after a confirmed hand-over are committed, by librdkafka: in the
        # background every second, for partitions being revoked, and on close. A synchronous
        # commit from this loop can block for good when it overlaps a session timeout (the
        # rebalance it waits for needs this thread's poll()): the projector then stalls alive.
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 1000,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # Several projectors share the partitions (one group). Cooperative rebalancing moves
        # only the partitions that change owner: the others keep flowing while a projector
        # joins or leaves, instead of every member stopping for each rebalance.
        "partition.assignment.strategy": "cooperative-sticky",
        # A dead projector's partitions move to a live one within seconds, not 45 s.
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 2000,
        # The broker answers a fetch as soon as a record arrives (fetch.min.bytes 1); the wait
        # bounds only empty fetches, which at the default 500 ms were most of the idle CPU.
        "fetch.wait.max.ms": 2000,
        "logger": log,  # librdkafka's own lines go through logging, as JSON
    }
    config.update(overrides)
    return config


@dataclass
class Projector:
    consumer: Consumer
    topic: str
    publish: Publish
    queue_depth: QueueDepth = lambda: None
    batch_size: int = 500
    max_queued_tasks: int = 200
    poll_timeout: float = 1.0  # only how soon a stop is noticed; a record ends the wait
    # Injected in tests; the backpressure and retry waits are measured on it.
    clock: Callable[[], float] = time.monotonic
    # Called on every turn of the loop and of its waits (a watchdog's beat, see __main__).
    beat: Callable[[], None] = lambda: None
    _paused: bool = False
    _next_depth_check: float = 0.0
    _handed_over_since_check: bool = False
    batches_sent: int = 0
    events_sent: int = 0
    # Set once partitions are assigned; other threads must not call into the consumer.
    assigned: threading.Event = field(default_factory=threading.Event)

    def run(self, stop: threading.Event, *, idle_exit_after: float | None = None) -> None:
        """Consume until ``stop`` is set (or, for tools, until idle for a while)."""
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("projector: subscribed to %s", self.topic)
        idle_since = self.clock()
        try:
            while not stop.is_set():
                self.beat()
                if self._apply_backpressure(stop):
                    continue
                batch = self._deliveries(self._next_messages())
                if batch:
                    self._hand_over(batch, stop)
                    idle_since = self.clock()
                elif idle_exit_after is not None and self.clock() - idle_since > idle_exit_after:
                    break
        finally:
            # close() commits the stored offsets and leaves the group, so the partitions move at once.
            self.consumer.close()
            log.info("projector: closed after %d batches, %d events", self.batches_sent, self.events_sent)

    def _next_messages(self) -> list[Message]:
        # Wait for the first message only; then take what is already fetched, without
        # waiting for a full batch, so a lone event is not held back by batching.
        first = self.consumer.poll(self.poll_timeout)
        if first is None:
            return []
        return [first, *self.consumer.consume(self.batch_size - 1, 0)]

    def _deliveries(self, messages: list[Message]) -> list[tuple[Message, Delivery]]:
        batch = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("projector: consume error: %s", error)
                continue
            batch.append((message, Delivery.from_record(message)))
        return batch

    def _hand_over(self, batch: list[tuple[Message, Delivery]], stop: threading.Event) -> None:
        payload = [delivery.to_dict() for _, delivery in batch]
        delay = 0.2
        while True:
            try:
                self.publish(payload)
                break
            except Exception as exc:  # broker down or nacked: keep the batch, retry
                log.warning("projector: publish failed, retry in %.1f s: %s", delay, exc)
                self._pause()
                self._wait_until(self.clock() + delay)
                delay = min(delay * 2, 5.0)
                if stop.is_set() and delay >= 5.0:
                    # Shutting down with the broker gone: leave uncommitted, to be redelivered.
                    raise SystemExit(1) from exc
        self._resume()
        store_offsets(self.consumer, [message for message, _ in batch])
        self._handed_over_since_check = True
        self.batches_sent += 1
        self.events_sent += len(batch)
        EVENTS_HANDED_OVER.inc(len(batch))
        log.info(
            "projector: handed over %d events",
            len(batch),
            extra={"request_ids": sorted({d.request_id for _, d in batch if d.request_id})[:200]},
        )

    def _apply_backpressure(self, stop: threading.Event) -> bool:
        """Pause while the projections queue is too deep; keep polling to stay in the group."""
        now = self.clock()
        if now < self._next_depth_check:
            if self._paused:
                # Keep polling (heartbeats, rebalances) until the next look at the queue;
                # returning at once would spin the loop on a CPU while paused.
                self._wait_until(self._next_depth_check)
            return self._paused
        if not (self._paused or self._handed_over_since_check):
            # Idle: nothing went into the queue, so it cannot have grown past the bound; asking
            # RabbitMQ once a second (a connection each time) was most of an idle projector's CPU.
            # (Several projectors may so each put one batch past the bound before they look.)
            return False
        self._next_depth_check = now + DEPTH_CHECK_SECONDS
        self._handed_over_since_check = False
        depth = self.queue_depth()
        if depth is None:  # unknown (broker away): the depth is advisory, publishing decides
            self._resume()
            return False
        if depth > self.max_queued_tasks and not self._paused:
            log.info("projector: %d tasks queued, pausing", depth)
            self._pause()
        elif self._paused and depth <= self.max_queued_tasks // 2:
            log.info("projector: %d tasks queued, resuming", depth)
            self._resume()
        if self._paused:
            self._wait_until(self.clock() + 0.5)
        return self._paused

    def _pause(self) -> None:
        if not self._paused:
            assignment = self.consumer.assignment()
            if assignment:
                self.consumer.pause(assignment)
            self._paused = True

    def _resume(self) -> None:
        if self._paused:
            assignment = self.consumer.assignment()
            if assignment:
                self.consumer.resume(assignment)
            self._paused = False

    def _wait_until(self, deadline: float) -> None:
        # poll() on paused partitions returns nothing but serves heartbeats and rebalances.
        while (left := deadline - self.clock()) > 0:
            self.beat()
            message = self.consumer.poll(min(left, 0.2))
            if message is not None and message.error() is None:
                # A message fetched before the pause took effect: seek back so it is re-read.
                self.consumer.seek(TopicPartition(message.topic(), message.partition(), message.offset()))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("projector: assigned %s", [p.partition for p in partitions])
        self.assigned.set()
        if self._paused and partitions:
            consumer.pause(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Cooperative: only the partitions leaving this member. librdkafka commits what was
        # stored for them before they go (their next owner starts there).
        log.info("projector: revoked %s", [p.partition for p in partitions])


def store_offsets(consumer: Consumer, messages: list[Message]) -> None:
    """Store the offsets after ``messages`` (a confirmed hand-over) for librdkafka to commit."""
    offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets(messages).items()]
    try:
        consumer.store_offsets(offsets=offsets)
    except KafkaException as exc:
        # The partition moved meanwhile: its next owner re-reads from the last commit, and
        # the projection is idempotent.
        log.warning("projector: offsets not stored: %s", exc)


def celery_publisher(settings: Settings, queue: str = PROJECTIONS_QUEUE) -> tuple[Publish, QueueDepth]:
    """Publish to the projections queue with confirms (by task name), and read its depth."""
    celery_app = make_celery(settings)

    def publish(deliveries: list[dict[str, Any]]) -> None:
        request_ids = sorted({d["request_id"] for d in deliveries if d.get("request_id")})
        celery_app.send_task(
            PROJECT_TASK,
            args=[deliveries],
            queue=queue,
            routing_key=queue,
            headers={"request_ids": request_ids[:100]},
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1},
            # py-amqp waits for the broker's confirm without end by default: a broker that
            # blocks publishers (a memory or disk alarm) would stall the loop until the
            # watchdog restarts it, again and again. Bounded, it is a failed publish to retry.
            timeout=PUBLISH_TIMEOUT_SECONDS,
            confirm_timeout=PUBLISH_TIMEOUT_SECONDS,
        )

    def queue_depth() -> int | None:
        try:
            with celery_app.connection_for_read() as conn:
                declared = conn.default_channel.queue_declare(queue=queue, passive=True)
                return int(declared.message_count)
        except Exception as exc:  # the depth is advisory; publish errors are handled apart
            log.debug("projector: queue depth unknown: %s", exc)
            return None

    return publish, queue_depth


def build_projector(settings: Settings, **consumer_overrides: Any) -> Projector:
    publish, queue_depth = celery_publisher(settings)
    return Projector(
        consumer=Consumer(consumer_config(settings, **consumer_overrides)),
        topic=settings.kafka_topic,
        publish=publish,
        queue_depth=queue_depth,
        batch_size=settings.projector_batch_size,
        max_queued_tasks=settings.projector_max_queued_tasks,
    )
