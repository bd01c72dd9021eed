"""The relay against real PostgreSQL and Kafka: order, keys, acknowledgements, one leader."""

from __future__ import annotations

import json
import threading
import uuid
from collections import defaultdict
from dataclasses import replace

import pytest
from sqlalchemy import text

from auth_api import commands
from auth_api.extensions import db
from auth_api.lockout import LockoutPolicy
from auth_api.models import Device
from auth_api.passwords import PasswordHasher
from auth_api.unit_of_work import SqlUnitOfWork
from event_contract.crypto import MasterKeys
from outbox_relay.relay import (
    RELAY_LOCK_KEY,
    kafka_producer,
    purge_published,
    relay_outbox,
    relay_shards,
    shard_lock_key,
    shard_of,
)
from tests.support.databases import scratch_database
from tests.support.kafka_tools import delete_topic, fresh_topic, read_all

PASSWORD = "correct horse battery"


@pytest.fixture
def auth_db_app(settings):
    from auth_api import create_app

    quiet = replace(settings, relay_kick=False)
    with scratch_database(
        settings.auth_database_url, lambda config: create_app(quiet, config), "relay"
    ) as app:
        with app.app_context():
            yield app


@pytest.fixture
def topic_name(settings):
    name = fresh_topic(settings.kafka_bootstrap)
    yield name
    delete_topic(settings.kafka_bootstrap, name)


HASHER = PasswordHasher("pbkdf2:sha256:1000")
MASTER = MasterKeys.parse(MasterKeys.generate_line("relay-test"))


def _make_history(users: int, logins: int) -> dict[str, int]:
    """Register users and log each in ``logins`` times (one failure first); versions per user."""
    device = Device(ip="127.0.0.1", user_agent="pytest")
    headers = {"request_id": "relay-test"}
    ids = {}
    for n in range(users):
        email = f"relay-{uuid.uuid4().hex[:8]}-{n}@example.com"
        uow = SqlUnitOfWork(db.session, MASTER)
        outcome = commands.register(uow, HASHER, email, PASSWORD, headers=headers)
        ids[str(outcome.account.id)] = outcome.account.email
    versions = {}
    for user_id, email in ids.items():
        log_in = [SqlUnitOfWork(db.session, MASTER), HASHER, LockoutPolicy(), email]
        with pytest.raises(commands.InvalidCredentials):
            commands.log_in(*log_in, "wrong password", device, failure_secret=b"relay-test", headers=headers)  # type: ignore[arg-type]
        for _ in range(logins):
            commands.log_in(*log_in, PASSWORD, device, failure_secret=b"relay-test", headers=headers)  # type: ignore[arg-type]
        versions[user_id] = 2 + 2 * logins  # a login is UserLoggedIn + SessionStarted
    return versions


def _outbox_counts(engine=None) -> tuple[int, int]:
    with (engine or db.engine).connect() as conn:
        row = conn.execute(
            text("SELECT count(*), count(*) FILTER (WHERE published_at IS NULL) FROM outbox")
        ).one()
    return row[0], row[1]


def _assert_per_user_order(records, versions: dict[str, int]) -> None:
    by_user = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_user[record.key.decode()].append(record)
    assert set(by_user) == set(versions)
    for user_id, user_records in by_user.items():
        assert len({r.partition for r in user_records}) == 1, "one user's events span partitions"
        sequences = [json.loads(r.value)["sequence"] for r in user_records]
        assert sequences == list(range(1, versions[user_id] + 1))
        assert all(json.loads(r.value)["subject"] == user_id for r in user_records)


def test_relay_publishes_each_users_events_in_order_keyed_by_user(auth_db_app, settings, topic_name):
    versions = _make_history(users=20, logins=3)
    total, unpublished = _outbox_counts()
    assert total == unpublished == 20 * 8

    producer = kafka_producer(settings.kafka_bootstrap, 10000)
    result = relay_outbox(db.engine, producer, topic_name, batch_size=37, delivery_timeout_s=15)

    assert (result.published, result.failed, result.locked_out) == (160, 0, False)
    assert _outbox_counts() == (160, 0)
    records = read_all(settings.kafka_bootstrap, topic_name)
    assert len(records) == 160
    assert len({json.loads(r.value)["id"] for r in records}) == 160
    assert all(r.headers.get("request_id") == b"relay-test" for r in records)
    _assert_per_user_order(records, versions)


def test_rows_kafka_did_not_acknowledge_stay_unpublished(auth_db_app, settings, topic_name):
    _make_history(users=5, logins=1)  # 20 events
    # A broker address where nothing listens: every delivery times out.
    dead = kafka_producer("127.0.0.1:1", 1500)
    result = relay_outbox(db.engine, dead, topic_name, delivery_timeout_s=10)
    assert (result.published, result.failed) == (0, 20)
    assert _outbox_counts() == (20, 20)

    # A topic that does not exist (auto-creation is off): refused, nothing marked.
    live = kafka_producer(settings.kafka_bootstrap, 3000)
    result = relay_outbox(db.engine, live, f"missing-{uuid.uuid4().hex[:6]}", delivery_timeout_s=10)
    assert result.published == 0 and result.failed == 20
    assert _outbox_counts() == (20, 20)

    result = relay_outbox(db.engine, live, topic_name, delivery_timeout_s=10)
    assert (result.published, result.failed) == (20, 0)
    assert _outbox_counts() == (20, 0)
    assert len(read_all(settings.kafka_bootstrap, topic_name)) == 20


def test_a_relay_skips_while_another_holds_the_lock(auth_db_app, settings, topic_name):
    _make_history(users=2, logins=0)  # 4 rows
    with db.engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": RELAY_LOCK_KEY})
        result = relay_outbox(db.engine, kafka_producer(settings.kafka_bootstrap, 3000), topic_name)
        assert result.locked_out and result.published == 0
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": RELAY_LOCK_KEY})
        holder.commit()
    assert _outbox_counts() == (4, 4)


def test_two_relays_at_once_publish_each_row_once_and_in_order(auth_db_app, settings, topic_name):
    versions = _make_history(users=40, logins=10)  # 880 events
    total, _ = _outbox_counts()
    results = []
    engine = db.engine  # threads have no app context

    def run_relay() -> None:
        producer = kafka_producer(settings.kafka_bootstrap, 10000)
        for _ in range(50):  # both keep trying until the outbox is drained
            results.append(relay_outbox(engine, producer, topic_name, batch_size=25))
            if _outbox_counts(engine)[1] == 0:
                return

    threads = [threading.Thread(target=run_relay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert _outbox_counts() == (total, 0)
    assert sum(r.published for r in results) == total
    assert any(r.locked_out for r in results) or len(results) >= 2
    records = read_all(settings.kafka_bootstrap, topic_name)
    assert len(records) == total == 880, "a row was published twice or not at all"
    _assert_per_user_order(records, versions)


def test_each_shard_publishes_exactly_its_users_rows(auth_db_app, settings, topic_name):
    versions = _make_history(users=30, logins=1)  # 120 events
    producer = kafka_producer(settings.kafka_bootstrap, 10000)
    published = 0
    for shard in range(4):
        expected = {u for u in versions if shard_of(u, 4) == shard}
        before = {r.key.decode() for r in read_all(settings.kafka_bootstrap, topic_name)}
        result = relay_outbox(db.engine, producer, topic_name, shard=shard, shards=4)
        assert result.published == 4 * len(expected) and not result.failed
        published += result.published
        keys = {r.key.decode() for r in read_all(settings.kafka_bootstrap, topic_name)} - before
        assert keys == expected, f"shard {shard} published other users' rows (SQL and shard_of disagree)"
    assert published == 120 and _outbox_counts() == (120, 0)


def test_a_held_shard_holds_back_only_its_own_users(auth_db_app, settings, topic_name):
    versions = _make_history(users=24, logins=0)  # 48 rows
    held = {u for u in versions if shard_of(u, 3) == 1}
    assert held and len(held) < len(versions)
    with db.engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": shard_lock_key(1, 3)})
        producer = kafka_producer(settings.kafka_bootstrap, 10000)
        result = relay_shards(db.engine, producer, topic_name, shards=3, first=1)
        assert result.published == 2 * (len(versions) - len(held)) and not result.locked_out
        assert result.skipped_shards == 1 and not result.covered_everything
        assert _outbox_counts() == (48, 2 * len(held))
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": shard_lock_key(1, 3)})
        holder.commit()
    assert relay_shards(db.engine, producer, topic_name, shards=3).published == 2 * len(held)
    assert _outbox_counts() == (48, 0)


def test_four_shard_relays_at_once_publish_each_row_once_and_in_order(auth_db_app, settings, topic_name):
    versions = _make_history(users=40, logins=10)  # 880 events
    total, _ = _outbox_counts()
    results = []
    engine = db.engine  # threads have no app context

    def run_relay(first: int) -> None:
        producer = kafka_producer(settings.kafka_bootstrap, 10000)
        for _ in range(50):
            results.append(relay_shards(engine, producer, topic_name, shards=4, first=first, batch_size=20))
            if _outbox_counts(engine)[1] == 0:
                return

    threads = [threading.Thread(target=run_relay, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert _outbox_counts() == (total, 0)
    assert sum(r.published for r in results) == total
    records = read_all(settings.kafka_bootstrap, topic_name)
    assert len(records) == total == 880, "a row was published twice or not at all"
    _assert_per_user_order(records, versions)


def test_purge_deletes_only_rows_published_before_the_retention(auth_db_app, settings, topic_name):
    _make_history(users=3, logins=0)  # 6 rows (a registration and a failed login each)
    relay_outbox(db.engine, kafka_producer(settings.kafka_bootstrap, 5000), topic_name)
    _make_history(users=2, logins=0)  # 4 unpublished rows
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE outbox SET published_at = now() - interval '2 hours' WHERE published_at IS NOT NULL")
        )
    assert purge_published(db.engine, retention_seconds=3 * 3600) == 0
    assert purge_published(db.engine, retention_seconds=3600, chunk=4) == 6
    assert _outbox_counts() == (4, 4)
