"""Kafka consumer (group ``notifier``) that hands event batches to the notification workers.

Modelled on the projector's hand-off: a batch is published to queue ``notifications`` with
publisher confirms, and only then are its offsets stored (per partition, last offset + 1)
for librdkafka to commit. A crash before the commit means redelivery, never loss; the
workers' claims make redelivery send nothing twice. While the queue is deep the consumer
pauses its partitions and keeps polling, so it stays in the group.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from celery_config.app import NOTIFICATIONS_QUEUE, NOTIFY_TASK, PUBLISH_TIMEOUT_SECONDS, make_celery
from event_contract import Delivery, next_offsets
from notifier.metrics import EVENTS_HANDED_OVER
from notifier.payload import batch_repr
from settings import Settings

log = logging.getLogger(__name__)

Publish = Callable[[list[dict[str, Any]]], None]
QueueDepth = Callable[[], int | None]
DEPTH_CHECK_SECONDS = 1.0
MAX_RETRY_DELAY = 5.0


def consumer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": settings.notifier_group_id,
        "client.id": "notifier",
        # As the projector's: librdkafka commits the offsets stored after each confirmed
        # hand-over (a synchronous commit here can block for good across a session timeout).
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 1000,
        "enable.auto.offset.store": False,
        # A new group starts at the topic's beginning: the claims skip what was mailed before.
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 2000,
        # The broker answers a fetch as soon as a record arrives (fetch.min.bytes 1); the wait
        # bounds only empty fetches, which at the default 500 ms were most of the idle CPU.
        "fetch.wait.max.ms": 2000,
        "logger": log,
        **overrides,
    }


@dataclass
class Notifier:
    consumer: Consumer
    topic: str
    publish: Publish
    queue_depth: QueueDepth = lambda: None
    batch_size: int = 500
    max_queued_tasks: int = 200
    poll_timeout: float = 1.0  # only how soon a stop is noticed; a record ends the wait
    clock: Callable[[], float] = time.monotonic
    # Called on every turn of the loop and of its waits (a watchdog's beat, see __main__).
    beat: Callable[[], None] = lambda: None
    events_sent: int = 0
    _paused: bool = False
    _next_depth_check: float = 0.0
    _handed_over_since_check: bool = False

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; then commit what was handed over and leave the group."""
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("notifier: subscribed to %s", self.topic)
        try:
            while not stop.is_set():
                self.beat()
                if self._backpressure():
                    continue
                batch = self._next_batch()
                if batch:
                    self._hand_over(batch, stop)
        finally:
            self.consumer.close()  # commits the stored offsets and leaves the group
            log.info("notifier: closed after %d events", self.events_sent)

    def _next_batch(self) -> list[Message]:
        # Wait for the first record only, then take what is already fetched.
        first = self.consumer.poll(self.poll_timeout)
        if first is None:
            return []
        messages = [first, *self.consumer.consume(self.batch_size - 1, 0)]
        batch = []
        for message in messages:
            error = message.error()
            if error is None:
                batch.append(message)
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("notifier: consume error: %s", error)
        return batch

    def _hand_over(self, batch: list[Message], stop: threading.Event) -> None:
        payload = [Delivery.from_record(message).to_dict() for message in batch]
        delay = 0.2
        while True:
            try:
                self.publish(payload)
                break
            except Exception as exc:  # broker away or the publish nacked: keep the batch, retry
                log.warning("notifier: publish failed, retry in %.1f s: %s", delay, exc.__class__.__name__)
                self._set_paused(True)
                self._poll_until(self.clock() + delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                if stop.is_set() and delay >= MAX_RETRY_DELAY:
                    # Stopping with the broker gone: leave it uncommitted, to be redelivered.
                    raise SystemExit(1) from exc
        self._set_paused(False)
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets(batch).items()]
        try:
            self.consumer.store_offsets(offsets=offsets)
        except KafkaException as exc:
            # The partition moved meanwhile: its next owner re-reads, and the claims dedupe.
            log.warning("notifier: offsets not stored: %s", exc)
        self._handed_over_since_check = True
        self.events_sent += len(batch)
        EVENTS_HANDED_OVER.inc(len(batch))
        log.info("notifier: handed over %d events", len(batch))

    def _backpressure(self) -> bool:
        """True while paused because the notifications queue is deep (checked once a second)."""
        now = self.clock()
        # Only after a hand-over (or while paused): idle, the queue cannot have grown, and
        # each look at it costs a RabbitMQ connection.
        if now >= self._next_depth_check and (self._paused or self._handed_over_since_check):
            self._next_depth_check = now + DEPTH_CHECK_SECONDS
            self._handed_over_since_check = False
            depth = self.queue_depth()
            if depth is None:  # unknown: advisory only, publishing decides
                self._set_paused(False)
            elif depth > self.max_queued_tasks:
                self._set_paused(True)
            elif depth <= self.max_queued_tasks // 2:
                self._set_paused(False)
        if self._paused:
            self._poll_until(min(self._next_depth_check, self.clock() + 0.5))
        return self._paused

    def _set_paused(self, paused: bool) -> None:
        if paused == self._paused:
            return
        assignment = self.consumer.assignment()
        if assignment:
            (self.consumer.pause if paused else self.consumer.resume)(assignment)
        self._paused = paused
        log.info("notifier: %s", "paused" if paused else "resumed")

    def _poll_until(self, deadline: float) -> None:
        # poll() on paused partitions returns nothing but serves heartbeats and rebalances.
        while (left := deadline - self.clock()) > 0:
            self.beat()
            message = self.consumer.poll(min(left, 0.2))
            if message is not None and message.error() is None:
                # Fetched before the pause took effect: seek back so it is read again.
                self.consumer.seek(TopicPartition(message.topic(), message.partition(), message.offset()))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("notifier: assigned %s", [p.partition for p in partitions])
        if self._paused and partitions:
            consumer.pause(partitions)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("notifier: revoked %s", [p.partition for p in partitions])  # librdkafka commits them


def celery_publisher(settings: Settings) -> tuple[Publish, QueueDepth]:
    """Publish to the notifications queue with confirms (by task name), and read its depth."""
    celery_app = make_celery(settings)

    def publish(deliveries: list[dict[str, Any]]) -> None:
        celery_app.send_task(
            NOTIFY_TASK,
            args=[deliveries],
            queue=NOTIFICATIONS_QUEUE,
            routing_key=NOTIFICATIONS_QUEUE,
            argsrepr=batch_repr(deliveries),
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
                declared = conn.default_channel.queue_declare(queue=NOTIFICATIONS_QUEUE, passive=True)
                return int(declared.message_count)
        except Exception as exc:
            log.debug("notifier: queue depth unknown: %s", exc)
            return None

    return publish, queue_depth


def build_notifier(settings: Settings, **consumer_overrides: Any) -> Notifier:
    publish, queue_depth = celery_publisher(settings)
    return Notifier(
        consumer=Consumer(consumer_config(settings, **consumer_overrides)),
        topic=settings.kafka_topic,
        publish=publish,
        queue_depth=queue_depth,
        batch_size=settings.projector_batch_size,
        max_queued_tasks=settings.projector_max_queued_tasks,
    )
