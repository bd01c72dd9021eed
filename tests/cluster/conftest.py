"""`make test-cluster`: the session's system on three Kafka brokers and a read replica.

The brokers and the replica start before any fixture makes the topic or the processes, and
stay up after the session (as the shared servers do); `services/down.sh` or
`services/kafka.sh cluster-stop` / `services/postgres.sh replica-stop` (with the session's
KAFKA_CLUSTER_PORT and PG_REPLICA_PORT) stop them.
"""

from __future__ import annotations

import pytest

from tests.support import cluster, environment


@pytest.fixture(scope="session", autouse=True)
def cluster_servers() -> None:
    assert environment.KAFKA_CLUSTER and environment.PG_REPLICA, "run with make test-cluster"
    cluster.start_cluster()
    for node in cluster.NODES:  # a node left stopped by an interrupted run
        cluster.broker("start", node)
    cluster.replica("start")
    # A replay left paused by an interrupted run would hold the replica behind.
    cluster.replica_sql("SELECT pg_wal_replay_resume()")
