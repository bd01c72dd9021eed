"""Erasure on the real query database: an erased account leaves a tombstone and nothing else,
whatever the order, duplication and batching of its events, whether its data key is still
there when each batch is parsed, and when two batches race."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from event_contract import Delivery, Event, serialize_event
from event_contract.crypto import DataKey, new_data_key
from projector.projection.apply import apply_batch
from tests.support.lifecycle import T0, AccountBuilder, account_streams
from tests.support.read_model import query_engine, rows

PERSONAL = ("email", "registered_at", "last_login_at", "last_failed_login_at", "password_changed_at")


class KeyRing:
    """Data keys as the key store holds them; ``erase`` destroys one, as the write side does."""

    def __init__(self) -> None:
        self.keys: dict[uuid.UUID, DataKey] = {}

    def key_for(self, user_id: uuid.UUID) -> DataKey:
        return self.keys.setdefault(user_id, new_data_key())

    def get(self, user_id: uuid.UUID, key_id: uuid.UUID) -> bytes | None:
        key = self.keys.get(user_id)
        return key.secret if key is not None and key.key_id == key_id else None

    def erase(self, user_id: uuid.UUID) -> None:
        self.keys.pop(user_id, None)


def _sealed(ring: KeyRing, event: Event) -> Delivery:
    return Delivery.from_bytes(serialize_event(event, ring.key_for(event.user_id)), key=str(event.user_id))


def _erased(events: list[Event]) -> tuple[list[Event], uuid.UUID]:
    """The events of the first user, then its UserDeleted (the others untouched)."""
    victim = events[0].user_id
    last = max(e.sequence for e in events if e.user_id == victim)
    deleted = Event(uuid.uuid4(), "UserDeleted", victim, last + 1, T0 + timedelta(days=30), {"by": "self"})
    return [*events, deleted], victim


def _state(user_id: uuid.UUID) -> dict[str, list]:
    return {
        "users": rows("SELECT * FROM read_model.users WHERE id = :id", id=str(user_id)),
        **{
            table: rows(f"SELECT * FROM read_model.{table} WHERE user_id = :id", id=str(user_id))
            for table in ("login_history", "sessions", "timeline")
        },
    }


def _assert_tombstone(user_id: uuid.UUID) -> None:
    state = _state(user_id)
    (row,) = state["users"]
    assert row["deleted_at"] is not None
    assert all(row[name] is None for name in PERSONAL), row
    assert (row["roles"], row["login_count"], row["failed_login_count"]) == ([], 0, 0)
    assert state["login_history"] == state["sessions"] == state["timeline"] == []


def _cleanup(events: list[Event]) -> None:
    from sqlalchemy import text

    users = sorted({str(e.user_id) for e in events})
    with query_engine().begin() as conn:
        for table, owner in (
            ("users", "id"),
            ("login_history", "user_id"),
            ("sessions", "user_id"),
            ("timeline", "user_id"),
        ):
            conn.execute(
                text(f"DELETE FROM read_model.{table} WHERE {owner} = ANY(CAST(:ids AS uuid[]))"),
                {"ids": users},
            )
        conn.execute(
            text("DELETE FROM read_model.processed_events WHERE event_id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": [str(e.id) for e in events]},
        )


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_an_erased_account_leaves_only_a_tombstone_in_any_order(test_databases, data):
    events, victim = _erased(data.draw(account_streams(max_users=2, max_steps=8), label="events"))
    ring = KeyRing()
    deliveries = [_sealed(ring, e) for e in events]  # sealed while every key exists
    copies = [d for d in deliveries for _ in range(data.draw(st.integers(1, 2)))]
    shuffled = data.draw(st.permutations(copies), label="order")
    # The key is destroyed at some point of the delivery: later batches cannot open its events.
    erase_at = data.draw(st.integers(0, len(shuffled)), label="erase_at")
    try:
        for position, delivery in enumerate(shuffled):
            if position == erase_at:
                ring.erase(victim)
            with query_engine().begin() as conn:
                report = apply_batch(conn, [delivery], ring)
            assert report.dead_lettered == 0
        _assert_tombstone(victim)
        survivors = {e.user_id for e in events} - {victim}
        for user in survivors:  # the others are whole
            assert rows("SELECT email FROM read_model.users WHERE id = :id", id=str(user))[0]["email"]
        claimed = (
            "SELECT count(*) AS n FROM read_model.processed_events WHERE event_id = ANY(CAST(:ids AS uuid[]))"
        )
        applied = rows(claimed, ids=[str(e.id) for e in events])[0]["n"]
        assert applied == len(events)  # every event counted once, readable or not
    finally:
        _cleanup(events)


def _race(first: list[Delivery], second: list[Delivery], ring: KeyRing) -> None:
    """``first`` applies and holds its transaction open while ``second`` starts (and blocks on
    the user's row), then commits: the two batches interleave as concurrent workers would."""
    holding, started = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run_second() -> None:
        try:
            holding.wait(10)
            started.set()
            with query_engine().begin() as conn:
                apply_batch(conn, second, ring)
        except BaseException as exc:  # reported to the test
            errors.append(exc)

    thread = threading.Thread(target=run_second)
    thread.start()
    with query_engine().begin() as conn:
        apply_batch(conn, first, ring)
        holding.set()
        started.wait(10)
        thread.join(0.5)  # it waits on the row lock meanwhile
        assert thread.is_alive(), "the second batch did not wait for the first"
    thread.join(20)
    assert not errors, errors


def test_a_login_racing_the_deletion_leaves_nothing_either_way(test_databases):
    for deletion_first in (True, False):
        account = AccountBuilder().register(T0)
        account.login(T0 + timedelta(minutes=1), "198.51.100.9", "racer/1")
        (events, victim) = _erased(account.events)
        ring = KeyRing()
        deliveries = [_sealed(ring, e) for e in events]
        rest, deleted = deliveries[:-1], deliveries[-1:]
        try:
            if deletion_first:
                _race(deleted, rest, ring)
            else:
                _race(rest, deleted, ring)
            _assert_tombstone(victim)
        finally:
            _cleanup(events)
