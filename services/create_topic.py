#!/usr/bin/env python3
"""Create the project's Kafka topic (idempotent) with confluent_kafka's AdminClient.

``create_topic()`` is the project's one topic creator (tests and benchmarks import it);
as a script (``services/up.sh``):

    python services/create_topic.py [--bootstrap 127.0.0.1:9092] [--topic user-events]
                                    [--partitions 6] [--timeout 60]

Defaults come from the environment:
  bootstrap   KAFKA_BOOTSTRAP_SERVERS, else KAFKA_BOOTSTRAP, else 127.0.0.1:${KAFKA_PORT:-9092}
  topic       KAFKA_TOPIC (user-events)
  partitions  KAFKA_PARTITIONS (6)
Replication factor 1, retention.ms=-1 and retention.bytes=-1 (keep every event). An existing
topic is fine (its retention settings are set again); its partition count is never changed
(that would move keys between partitions). Exits 0 once every partition has a leader, 1 on failure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1"}


def log(msg: str) -> None:
    print(f"[create_topic] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    default_bootstrap = (
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        or os.environ.get("KAFKA_BOOTSTRAP")
        or f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
    )
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", default=default_bootstrap, help="bootstrap servers (%(default)s)")
    p.add_argument(
        "--topic", default=os.environ.get("KAFKA_TOPIC", "user-events"), help="topic (%(default)s)"
    )
    p.add_argument(
        "--partitions",
        type=int,
        default=int(os.environ.get("KAFKA_PARTITIONS", "6")),
        help="partitions (%(default)s)",
    )
    p.add_argument("--replication-factor", type=int, default=1, help="replication factor (%(default)s)")
    p.add_argument(
        "--min-insync-replicas",
        type=int,
        default=None,
        help="replicas that must have a write before acks=all answers (the broker's default)",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="overall deadline in seconds (%(default)s)")
    args = p.parse_args(argv)
    if args.partitions < 1:
        p.error("--partitions must be >= 1")
    return args


def error_code(exc: BaseException) -> int | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0].code()
    return None


def topic_partitions(admin: AdminClient, topic: str, timeout: float) -> dict | None:
    md = admin.list_topics(topic=topic, timeout=timeout)
    tm = md.topics.get(topic)
    if tm is None or tm.error is not None:
        return None
    return tm.partitions


def ensure_config(admin: AdminClient, topic: str, timeout: float, config: dict[str, str]) -> None:
    """Set ``config`` on an existing topic (incremental, other settings untouched)."""
    res = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()
        ],
    )
    for fut in admin.incremental_alter_configs([res]).values():
        fut.result(timeout=timeout)


class TopicError(RuntimeError):
    """The topic could not be created, or its partitions got no leader, before the deadline."""


def create_topic(
    bootstrap: str,
    topic: str,
    partitions: int = 6,
    *,
    replication_factor: int = 1,
    min_insync_replicas: int | None = None,
    timeout: float = 60.0,
) -> None:
    """Create ``topic`` if missing and return once every partition has a leader.

    The one topic creator of the project: ``services/up.sh`` (through ``main``), the tests and
    the benchmarks call it. Raises ``TopicError`` when the deadline passes. On the cluster
    profile: replication factor 3 and ``min_insync_replicas`` 2, so an event acknowledged
    with acks=all is on two brokers.
    """
    config = dict(TOPIC_CONFIG)
    if min_insync_replicas is not None:
        config["min.insync.replicas"] = str(min_insync_replicas)
    deadline = time.monotonic() + timeout
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})

    def remaining() -> float:
        return max(1.0, deadline - time.monotonic())

    existed = False
    # 1. create (retrying transient errors until the deadline; "already exists" is fine)
    while True:
        new = NewTopic(
            topic, num_partitions=partitions, replication_factor=replication_factor, config=dict(config)
        )
        fut = admin.create_topics([new], operation_timeout=min(30.0, remaining()))[topic]
        try:
            fut.result(timeout=remaining())
            log(f"created topic {topic!r} ({partitions} partitions, RF {replication_factor}) on {bootstrap}")
            break
        except KafkaException as exc:
            if error_code(exc) == KafkaError.TOPIC_ALREADY_EXISTS:
                log(f"topic {topic!r} already exists on {bootstrap}")
                existed = True
                break
            if time.monotonic() >= deadline:
                raise TopicError(f"could not create topic {topic!r} on {bootstrap}: {exc}") from exc
            log(f"retrying after: {exc}")
            time.sleep(1.0)
        except Exception as exc:  # timeouts from concurrent.futures, etc.
            if time.monotonic() >= deadline:
                raise TopicError(f"could not create topic {topic!r} on {bootstrap}: {exc!r}") from exc
            log(f"retrying after: {exc!r}")
            time.sleep(1.0)

    if existed:
        ensure_config(admin, topic, remaining(), config)

    # 2. make sure the partition count is at least what was asked for
    parts = None
    while parts is None:
        try:
            parts = topic_partitions(admin, topic, min(10.0, remaining()))
        except KafkaException as exc:
            log(f"metadata: {exc}")
        if parts is None:
            if time.monotonic() >= deadline:
                raise TopicError(f"topic {topic!r} not visible in metadata")
            time.sleep(0.5)
    if len(parts) != partitions:
        # Never repartition: a key's partition would change, and one user's events would
        # then sit in two partitions, losing their order. Changing it is a migration.
        log(f"WARNING: topic {topic!r} has {len(parts)} partitions (not {partitions}); left as is")

    # 3. wait until every partition has a leader
    while True:
        try:
            parts = topic_partitions(admin, topic, min(10.0, remaining()))
        except KafkaException as exc:
            log(f"metadata: {exc}")
            parts = None
        led = parts and all(p.leader >= 0 and p.error is None for p in parts.values())
        if parts and led and len(parts) >= partitions:
            log(f"topic {topic!r} ready: {len(parts)} partitions with leaders")
            return
        if time.monotonic() >= deadline:
            raise TopicError(f"topic {topic!r} partitions have no leader yet after {timeout}s")
        time.sleep(0.3)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        create_topic(
            args.bootstrap,
            args.topic,
            args.partitions,
            replication_factor=args.replication_factor,
            min_insync_replicas=args.min_insync_replicas,
            timeout=args.timeout,
        )
    except TopicError as exc:
        log(f"ERROR: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
