"""The cluster profile under test: three KRaft brokers and a PostgreSQL streaming replica on
the session's ports (``services/kafka.sh cluster-*``, ``services/postgres.sh replica-*``)."""

from __future__ import annotations

import os
import subprocess
from collections import Counter

from confluent_kafka.admin import AdminClient

from settings import ROOT
from tests.support.environment import KAFKA_CLUSTER_PORT, PG_REPLICA_PORT, TEST_SETTINGS

SERVICES = ROOT / "services"
NODES = (1, 2, 3)


def _service(script: str, *args: str, timeout: float = 420) -> None:
    env = {**os.environ, "KAFKA_CLUSTER_PORT": KAFKA_CLUSTER_PORT, "PG_REPLICA_PORT": PG_REPLICA_PORT}
    subprocess.run(["bash", str(SERVICES / script), *args], env=env, check=True, timeout=timeout)


def start_cluster() -> None:
    _service("kafka.sh", "cluster-start")


def broker(action: str, node: int) -> None:
    """``start``, ``stop`` (SIGTERM) or ``kill`` (SIGKILL) one node of the cluster."""
    _service("kafka.sh", f"broker-{action}", str(node))


def replica(action: str) -> None:
    """``start`` or ``stop`` the streaming replica the read API reads."""
    _service("postgres.sh", f"replica-{action}")


def replica_sql(sql: str) -> str:
    """SQL as the superuser on the replica (its unix socket; trust, as for the primary)."""
    env = {**os.environ, "PGPORT": PG_REPLICA_PORT}
    return subprocess.run(
        ["bash", str(SERVICES / "postgres.sh"), "psql", "-d", "postgres", "-At", "-c", sql],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


def partition_leaders(topic: str | None = None) -> dict[int, int]:
    """partition -> leading node id, from the cluster's metadata."""
    topic = topic or TEST_SETTINGS.kafka_topic
    admin = AdminClient({"bootstrap.servers": TEST_SETTINGS.kafka_bootstrap})
    partitions = admin.list_topics(topic, timeout=30).topics[topic].partitions
    return {p: meta.leader for p, meta in partitions.items()}


def busiest_leader(topic: str | None = None) -> int:
    """The node that leads the most partitions of the topic."""
    return Counter(partition_leaders(topic).values()).most_common(1)[0][0]


def all_partitions_led(topic: str | None = None) -> bool:
    try:
        leaders = partition_leaders(topic)
    except Exception:  # metadata unavailable while the cluster recovers
        return False
    return bool(leaders) and all(leader in NODES for leader in leaders.values())
