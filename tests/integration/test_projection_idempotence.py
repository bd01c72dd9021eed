"""Projection on the real query database: duplicates change nothing, early logins are kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from event_contract import Delivery, new_event, serialize_event
from projector.projection.apply import apply_batch
from tests.support.read_model import query_engine, rows, scalar

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _delivery(event) -> Delivery:
    return Delivery.from_bytes(serialize_event(event), "test/0/0")


def _history(user: uuid.UUID, email: str) -> list:
    return [
        new_event("UserRegistered", user, 1, {"email": email, "roles": ["user"]}, time=T0),
        new_event(
            "UserLoggedIn",
            user,
            2,
            {"email": email, "ip": "1.1.1.1", "user_agent": "ua"},
            time=T0 + timedelta(minutes=1),
        ),
        new_event(
            "UserLoginFailed",
            user,
            3,
            {"email": email, "reason": "invalid_password"},
            time=T0 + timedelta(minutes=2),
        ),
    ]


def _apply(deliveries) -> None:
    with query_engine().begin() as conn:
        apply_batch(conn, deliveries)


def _state(user: uuid.UUID) -> tuple:
    users = rows("SELECT * FROM read_model.users WHERE id = :id", id=user)
    logins = scalar("SELECT count(*) FROM read_model.login_history WHERE user_id = :id", id=user)
    return users, logins


def test_the_same_event_twice_leaves_one_row_and_one_count(test_databases):
    user = uuid.uuid4()
    login = new_event("UserLoggedIn", user, 2, {"email": "dup@example.com"}, time=T0)
    _apply([_delivery(login)])
    _apply([_delivery(login)])
    _apply([_delivery(login), _delivery(login)])  # twice inside one batch, too
    [row], logins = _state(user)
    assert row["login_count"] == 1
    assert logins == 1
    assert scalar("SELECT count(*) FROM read_model.processed_events WHERE event_id = :id", id=login.id) == 1


def test_a_whole_history_replayed_changes_nothing(test_databases):
    user = uuid.uuid4()
    deliveries = [_delivery(e) for e in _history(user, "replay@example.com")]
    _apply(deliveries)
    before = _state(user)
    _apply(deliveries)
    _apply(list(reversed(deliveries)))
    assert _state(user) == before
    [row], logins = before
    assert (row["login_count"], row["failed_login_count"], row["version"], logins) == (1, 1, 3, 2)


def test_a_login_before_its_registration_is_kept(test_databases):
    user = uuid.uuid4()
    registered, logged_in, failed = _history(user, "early@example.com")
    _apply([_delivery(logged_in)])
    [row], _ = _state(user)
    assert row["registered_at"] is None and row["login_count"] == 1
    _apply([_delivery(failed), _delivery(registered)])
    [row], logins = _state(user)
    assert row["registered_at"] == T0
    assert row["email"] == "early@example.com"
    assert row["roles"] == ["user"]
    assert (row["login_count"], row["failed_login_count"], row["version"], logins) == (1, 1, 3, 2)
    assert row["last_login_at"] == T0 + timedelta(minutes=1)


def test_a_failed_effect_leaves_no_processed_record(test_databases):
    """processed_events is written in the effect's transaction: a rollback loses neither."""
    user = uuid.uuid4()
    event = new_event("UserRegistered", user, 1, {"email": "rollback@example.com", "roles": ["user"]})
    engine = query_engine()
    try:
        with engine.begin() as conn:
            apply_batch(conn, [_delivery(event)])
            raise RuntimeError("crash after the effect, before commit")
    except RuntimeError:
        pass
    with engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM read_model.processed_events WHERE event_id = :id"),
                {"id": event.id},
            ).scalar()
            == 0
        )
    _apply([_delivery(event)])
    [row], _ = _state(user)
    assert row["email"] == "rollback@example.com"
