"""Relay shards and the cluster profile's settings: stable, and one broker or three alike."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from outbox_relay.relay import RELAY_LOCK_KEY, shard_lock_key, shard_of
from settings import load_settings


def test_the_shard_of_a_user_is_stable_and_matches_postgresql() -> None:
    # ('x' || left(md5('8d0e1c39-...'), 8))::bit(32)::bigint = 1109979576 on PostgreSQL.
    user = "8d0e1c39-0b0e-4a5e-9d5c-1b2f3a4b5c6d"
    assert [shard_of(user, n) for n in (1, 2, 3, 4, 7)] == [1109979576 % n for n in (1, 2, 3, 4, 7)]
    assert shard_of(uuid.UUID(user), 4) == shard_of(user, 4)


def test_users_spread_over_the_shards() -> None:
    spread = Counter(shard_of(uuid.uuid4(), 4) for _ in range(4000))
    assert set(spread) == {0, 1, 2, 3} and min(spread.values()) > 800


def test_one_shard_keeps_the_historic_lock_and_shards_have_their_own() -> None:
    assert shard_lock_key(0, 1) == RELAY_LOCK_KEY
    assert len({shard_lock_key(k, 4) for k in range(4)}) == 4
    with pytest.raises(ValueError):
        shard_lock_key(4, 4)


def test_the_cluster_profile_and_the_replica_only_change_addresses() -> None:
    one = load_settings({})
    three = load_settings({"KAFKA_CLUSTER": "1"})
    assert one.kafka_bootstrap == "127.0.0.1:9092"
    assert three.kafka_bootstrap == "127.0.0.1:9192,127.0.0.1:9193,127.0.0.1:9194"
    assert load_settings({"KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2"}).kafka_bootstrap == "a:1,b:2"
    replica = load_settings({"PG_REPLICA_PORT": "5433"})
    assert "@127.0.0.1:5433/query_db" in replica.query_database_url
    assert "@127.0.0.1:5432/query_db" in replica.projection_database_url
    assert load_settings({"RELAY_SHARDS": "4"}).relay_shards == 4 and one.relay_shards == 1
