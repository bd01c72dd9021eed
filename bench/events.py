"""Realistic event streams for the benchmarks, built through the event contract."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any


def user_events(count: int, logins_per_user: int = 3, block: int = 100) -> Iterator[Any]:
    """``count`` events: per user one UserRegistered then ``logins_per_user`` UserLoggedIn.

    Users are interleaved in blocks (round by round), as concurrent users' commands are,
    and each user's events keep their version order.
    """
    from event_contract import new_event

    per_user = 1 + logins_per_user
    base = datetime.now(UTC) - timedelta(hours=1)
    emitted = 0
    user_no = 0
    while emitted < count:
        users = []
        for _ in range(block):
            user_no += 1
            users.append((uuid.uuid4(), f"bench-{user_no}-{uuid.uuid4().hex[:6]}@example.com"))
        for version in range(1, per_user + 1):
            for user_id, email in users:
                if emitted >= count:
                    return
                when = base + timedelta(milliseconds=emitted)
                if version == 1:
                    event = new_event(
                        "UserRegistered", user_id, 1, {"email": email, "roles": ["user"]}, time=when
                    )
                else:
                    event = new_event(
                        "UserLoggedIn",
                        user_id,
                        version,
                        {"email": email, "ip": "127.0.0.1", "user_agent": "bench/1.0"},
                        time=when,
                    )
                emitted += 1
                yield event


def outbox_copy_buffer(events: list[Any]) -> io.StringIO:
    """Rows for ``COPY outbox (event_id, user_id, event_type, payload, headers)``."""
    from event_contract import serialize_event

    buffer = io.StringIO()
    for event in events:
        headers = json.dumps({"request_id": uuid.uuid4().hex})
        payload = "\\\\x" + serialize_event(event).hex()
        buffer.write(f"{event.id}\t{event.user_id}\t{event.type}\t{payload}\t{headers}\n")
    buffer.seek(0)
    return buffer


def fill_outbox(engine: Any, events: list[Any]) -> None:
    """Bulk-insert the events as unpublished outbox rows with COPY."""
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.copy_expert(
                "COPY outbox (event_id, user_id, event_type, payload, headers) FROM STDIN",
                outbox_copy_buffer(events),
            )
        raw.commit()
    finally:
        raw.close()


def fill_topic(topic: str, events: list[Any]) -> float:
    """Produce the events to ``topic`` as the relay does (key = user id); return seconds."""
    import time

    from confluent_kafka import Producer

    from event_contract import serialize_event
    from settings import load_settings

    producer = Producer(
        {
            "bootstrap.servers": load_settings().kafka_bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 500000,
        }
    )
    errors: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    started = time.perf_counter()
    for event in events:
        headers = [("content-type", b"application/cloudevents+json"), ("ce_type", event.type.encode())]
        while True:
            try:
                producer.produce(
                    topic,
                    key=str(event.user_id).encode(),
                    value=serialize_event(event),
                    headers=headers,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining or errors:
        raise RuntimeError(f"filling {topic}: {remaining} undelivered, errors {sorted(set(errors))[:3]}")
    return time.perf_counter() - started
