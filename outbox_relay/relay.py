"""Relaying the outbox to Kafka: one relay at a time per shard, in id order, nothing unconfirmed marked.

Shards (``RELAY_SHARDS``): users are split over N shards by a stable hash of the user id
(the first 32 bits of its MD5, the same in SQL and in ``shard_of``), each shard with its own
advisory lock, so N relays publish in parallel while one user's events, all in one shard,
stay in order. Change the shard count only with every relay stopped: a relay still running
with the old count would share users with a new shard under another lock.

Rows are selected as "not yet published", never as "after the last id sent": ids come
from a sequence and a row with a smaller id may commit after a larger one.

A relay that stops making progress (paused, frozen, cut off) loses the lock within
``lock_timeout_s``: the lock is transaction-scoped, and the transaction carries
``idle_in_transaction_session_timeout`` and ``statement_timeout`` (plus server-side TCP
keepalives and ``tcp_user_timeout`` for a peer that vanished), so PostgreSQL itself ends the
session and releases the lock; the next relay run takes over. This is chosen over a lease row
because the database, not the stalled client, enforces it, and because the stalled relay's
session is *gone*: when it wakes up, its ``UPDATE ... published_at`` fails and it marks
nothing it no longer owns. What it had already handed to its Kafka producer may still be
sent (a duplicate of what the new relay publishes, possibly after that user's newer events):
the projection is idempotent per event id, so duplicates change nothing. The Kafka wait of a
batch must stay below the bound, or a healthy relay waiting on a slow Kafka would be cut off.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from sqlalchemy import Engine, text

from observability.metrics import EVENTS_RELAYED, RELAY_FAILURES

log = logging.getLogger(__name__)

# The bounds of one relay transaction (SET LOCAL: they end with it). A relay silent for
# :ms is disconnected by the server, which ends its transaction and its lock.
_BOUND = text(
    "SELECT set_config('idle_in_transaction_session_timeout', :ms, true),"
    " set_config('statement_timeout', :ms, true),"
    " set_config('tcp_user_timeout', :ms, true),"
    " set_config('tcp_keepalives_idle', :keepalive, true),"
    " set_config('tcp_keepalives_interval', '1', true),"
    " set_config('tcp_keepalives_count', '3', true),"
    " set_config('application_name', :app, true)"
)

# pg advisory lock key of the relay ("outbox" in ASCII); other relays skip while it is held.
# Shard k of N > 1 takes RELAY_LOCK_KEY + k.
RELAY_LOCK_KEY = 0x6F7574626F78
# The shard of a row's user: the first 32 bits of md5(user id) modulo the shard count.
_SHARD_OF_ROW = "(('x' || left(md5(user_id::text), 8))::bit(32)::bigint % :shards) = :shard"


def shard_of(user_id: uuid.UUID | str, shards: int) -> int:
    """The relay shard of a user (the SQL filter computes the same)."""
    return int(hashlib.md5(str(user_id).encode()).hexdigest()[:8], 16) % shards


def shard_lock_key(shard: int, shards: int) -> int:
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} outside 0..{shards - 1}")
    return RELAY_LOCK_KEY + (shard if shards > 1 else 0)


@dataclass(frozen=True)
class RelayResult:
    published: int = 0
    locked_out: bool = False  # another relay holds the lock
    failed: int = 0  # rows Kafka did not acknowledge; they stay unpublished
    more_pending: bool = False  # stopped on the time budget with rows left
    request_ids: tuple[str, ...] = ()  # correlation ids of what was published (for the log)
    # Shards skipped because another relay held them (``relay_shards``). That relay may have
    # read its shard before a commit this run would have seen: the run did not cover it.
    skipped_shards: int = 0

    @property
    def covered_everything(self) -> bool:
        """Every row committed before the run started is published (by this run or before)."""
        return not (self.locked_out or self.skipped_shards or self.failed or self.more_pending)


def kafka_producer(bootstrap: str, delivery_timeout_ms: int, **overrides: Any) -> Producer:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": "outbox-relay",
        "enable.idempotence": True,  # no duplicates or reordering from producer retries
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "partitioner": "murmur2_random",  # same key -> partition mapping as Java clients
        "message.timeout.ms": delivery_timeout_ms,
        "queue.buffering.max.messages": 200000,
        "logger": log,  # librdkafka's own lines go through logging, as JSON
    }
    config.update(overrides)
    return Producer(config)


def relay_outbox(
    engine: Engine,
    producer: Producer,
    topic: str,
    *,
    batch_size: int = 1000,
    max_seconds: float = 5.0,
    delivery_timeout_s: float = 10.0,
    lock_timeout_s: float = 30.0,
    shard: int = 0,
    shards: int = 1,
) -> RelayResult:
    """Publish unpublished rows (of ``shard`` of ``shards``) batch by batch until none are
    left or time runs out.

    A relay silent for ``lock_timeout_s`` inside its transaction loses its session and lock.
    """
    lock_key = shard_lock_key(shard, shards)
    in_shard = f" AND {_SHARD_OF_ROW}" if shards > 1 else ""
    if delivery_timeout_s >= lock_timeout_s:
        raise ValueError("the Kafka wait must be shorter than the relay's lock timeout")
    bound_ms = str(int(lock_timeout_s * 1000))
    deadline = time.monotonic() + max_seconds
    published = 0
    request_ids: list[str] = []
    while True:
        with engine.begin() as conn:
            # Local to this transaction; the application name tells operators (and the
            # takeover test) which process holds the lock.
            conn.execute(
                _BOUND,
                {
                    "ms": bound_ms,
                    "keepalive": str(max(1, int(lock_timeout_s // 3))),
                    "app": f"outbox-relay:{os.getpid()}",
                },
            )
            # A transaction-scoped lock: released by commit, rollback or a dead connection.
            if not conn.execute(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": lock_key}
            ).scalar():
                return RelayResult(published=published, locked_out=True, request_ids=tuple(request_ids))
            rows = conn.execute(
                text(
                    "SELECT id, user_id, payload, headers, event_type FROM outbox"
                    f" WHERE published_at IS NULL{in_shard} ORDER BY id LIMIT :limit"
                ),
                {"limit": batch_size, "shard": shard, "shards": shards},
            ).all()
            if not rows:
                return RelayResult(published=published, request_ids=tuple(request_ids))
            delivered = _produce_and_wait(producer, topic, rows, delivery_timeout_s)
            if delivered:
                conn.execute(
                    text("UPDATE outbox SET published_at = now() WHERE id = ANY(:ids)"),
                    {"ids": delivered},
                )
            published += len(delivered)
        EVENTS_RELAYED.inc(len(delivered))
        done = set(delivered)
        request_ids.extend(
            r.headers["request_id"] for r in rows if r.id in done and (r.headers or {}).get("request_id")
        )
        failed = len(rows) - len(delivered)
        ids = tuple(request_ids)
        if failed:
            RELAY_FAILURES.inc(failed)
            return RelayResult(published=published, failed=failed, request_ids=ids)
        if len(rows) < batch_size:
            return RelayResult(published=published, request_ids=ids)
        if time.monotonic() >= deadline:
            return RelayResult(published=published, more_pending=True, request_ids=ids)


def relay_shards(
    engine: Engine,
    producer: Producer,
    topic: str,
    *,
    shards: int,
    first: int = 0,
    max_seconds: float = 5.0,
    **options: Any,
) -> RelayResult:
    """Relay every shard whose lock is free, starting at ``first`` (relays started at different
    shards spread over them), within one time budget; the results summed."""
    deadline = time.monotonic() + max_seconds
    total = RelayResult(locked_out=True)
    for k in range(shards):
        left = deadline - time.monotonic()
        if left <= 0:
            return replace(total, more_pending=True)
        result = relay_outbox(
            engine, producer, topic, shard=(first + k) % shards, shards=shards, max_seconds=left, **options
        )
        total = RelayResult(
            published=total.published + result.published,
            locked_out=total.locked_out and result.locked_out,
            failed=total.failed + result.failed,
            more_pending=total.more_pending or result.more_pending,
            request_ids=total.request_ids + result.request_ids,
            skipped_shards=total.skipped_shards + int(result.locked_out),
        )
    return total


def _produce_and_wait(producer: Producer, topic: str, rows: list[Any], timeout_s: float) -> list[int]:
    """Produce every row and wait for every delivery report; return the acknowledged ids."""
    delivered: list[int] = []
    errors: list[str] = []

    def report(row_id: int) -> Any:
        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                delivered.append(row_id)
            else:
                errors.append(str(err))

        return on_delivery

    for row in rows:
        headers = [("content-type", b"application/cloudevents+json"), ("ce_type", row.event_type.encode())]
        request_id = (row.headers or {}).get("request_id")
        if request_id:
            headers.append(("request_id", request_id.encode()))
        while True:
            try:
                producer.produce(
                    topic,
                    key=str(row.user_id).encode(),
                    value=bytes(row.payload),
                    headers=headers,
                    on_delivery=report(row.id),
                )
                break
            except BufferError:  # local queue full: serve callbacks to make room
                producer.poll(0.05)
    # message.timeout.ms < timeout_s, so every message gets a report before this returns.
    remaining = producer.flush(timeout_s)
    if remaining or errors:
        log.warning(
            "relay: %d of %d rows not acknowledged by Kafka",
            len(rows) - len(delivered),
            len(rows),
            extra={"kafka_errors": sorted(set(errors))[:5], "undelivered_in_queue": remaining},
        )
    return delivered


def purge_published(engine: Engine, retention_seconds: int, chunk: int = 10000) -> int:
    """Delete rows published longer ago than the retention, in chunks; return the count."""
    deleted = 0
    while True:
        with engine.begin() as conn:
            count = conn.execute(
                text(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
                    " WHERE published_at < now() - make_interval(secs => :secs) LIMIT :chunk)"
                ),
                {"secs": retention_seconds, "chunk": chunk},
            ).rowcount
        deleted += count
        if count < chunk:
            return deleted
