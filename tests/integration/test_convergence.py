"""Convergence on the real query database: any order, duplication and batching of a user's
events gives the read model that in-order, once-only application gives."""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import text

from event_contract import Delivery, Event, serialize_event
from projector.projection.apply import apply_batch
from projector.projection.folds import TIMELINE_FIELDS
from read_model.timeline import account_from_timeline
from tests.support.lifecycle import T0, AccountBuilder, account_streams, expected_accounts
from tests.support.read_model import query_engine, rows

TABLES = ("users", "login_history", "sessions", "timeline")


@st.composite
def deliveries_in_batches(draw: st.DrawFn, events: list[Event]) -> list[list[Delivery]]:
    """The events, each delivered 1-3 times, shuffled, cut into random batches."""
    copies = [e for e in events for _ in range(draw(st.integers(1, 3)))]
    shuffled = draw(st.permutations(copies))
    cuts = sorted(draw(st.lists(st.integers(0, len(shuffled)), max_size=6)))
    bounds = [0, *cuts, len(shuffled)]
    batches = [shuffled[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    return [[Delivery.from_bytes(serialize_event(e), "test/convergence") for e in batch] for batch in batches]


def _apply(batches: list[list[Delivery]]) -> None:
    for batch in batches:
        with query_engine().begin() as conn:
            apply_batch(conn, batch)


def _state(user_ids: list[str]) -> dict[str, list]:
    """Every projected row of the users (all tables), in a stable order."""
    key = {"users": "id", "login_history": "event_id", "sessions": "session_id", "timeline": "event_id"}
    return {
        table: rows(
            f"SELECT * FROM read_model.{table} WHERE {'id' if table == 'users' else 'user_id'}"
            f" = ANY(CAST(:ids AS uuid[])) ORDER BY {key[table]}",
            ids=user_ids,
        )
        for table in TABLES
    }


def _forget(user_ids: list[str], event_ids: list[str]) -> None:
    with query_engine().begin() as conn:
        for table in TABLES:
            owner = "id" if table == "users" else "user_id"
            conn.execute(
                text(f"DELETE FROM read_model.{table} WHERE {owner} = ANY(CAST(:ids AS uuid[]))"),
                {"ids": user_ids},
            )
        conn.execute(
            text("DELETE FROM read_model.processed_events WHERE event_id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": event_ids},
        )


def _in_order(events: list[Event]) -> list[list[Delivery]]:
    """The reference delivery: in version order, each event once, one transaction each."""
    ordered = sorted(events, key=lambda e: (e.user_id, e.sequence))
    return [[Delivery.from_bytes(serialize_event(e))] for e in ordered]


def _assert_matches_model(state: dict[str, list], events: list[Event]) -> None:
    model = expected_accounts(events)
    assert len(state["users"]) == len(model)
    for row in state["users"]:
        expected = model[str(row["id"])]
        assert row["email"] == expected["email"]
        assert row["status"] == expected["status"]
        assert row["registered_at"] == expected["registered_at"]
        assert sorted(row["roles"]) == sorted(expected["roles"])
        assert row["version"] == expected["version"]
        assert row["login_count"] == expected["login_count"]
        assert row["failed_login_count"] == expected["failed_login_count"]
        assert row["last_login_at"] == expected.get("last_login_at")
        assert row["last_failed_login_at"] == expected.get("last_failed_login_at")
        assert row["password_changed_at"] == expected.get("password_changed_at")
    assert len(state["login_history"]) == sum(u["logins"] for u in model.values())
    sessions = {str(s["session_id"]): s for s in state["sessions"]}
    wanted = {sid: s for u in model.values() for sid, s in u["sessions"].items()}
    assert set(sessions) == set(wanted)
    for sid, expected in wanted.items():
        row = sessions[sid]
        assert (row["started_at"], row["last_used_at"], row["ended_at"]) == (
            expected["started_at"],
            expected["last_used_at"],
            expected["ended_at"],
        )
        assert row["end_reason"] == expected.get("end_reason")
        assert (row["ip"], row["user_agent"]) == expected.get("device", (None, None))
        assert row["new_device"] == expected.get("new_device")
    # The timeline: one row per event, with only the fields its type shows (never a code).
    assert len(state["timeline"]) == sum(u["events"] for u in model.values())
    for entry in state["timeline"]:
        assert set(entry["data"]) == set(TIMELINE_FIELDS[entry["event_type"]])
        assert "code" not in json.dumps(entry["data"])
    # Folded whole, each user's timeline gives its live row (as_of = now is the live view).
    for row in state["users"]:
        account = account_from_timeline(
            row["id"], [_Entry(e) for e in state["timeline"] if e["user_id"] == row["id"]]
        )
        assert account is not None
        for name in (
            "email",
            "status",
            "roles",
            "registered_at",
            "last_login_at",
            "password_changed_at",
            "login_count",
            "failed_login_count",
            "version",
        ):
            assert getattr(account, name) == row[name], name


class _Entry:
    def __init__(self, row: dict) -> None:
        self.event_type, self.sequence = row["event_type"], row["sequence"]
        self.occurred_at, self.data = row["occurred_at"], row["data"]


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_order_duplication_and_batching_converges(test_databases, data):
    """Every event type: logins with their sessions, refreshes and ends (some before their
    start), failures, roles, password changes, email change requests and changes,
    deactivation and reactivation; each delivered 1-3 times, shuffled, in random batches."""
    events = data.draw(account_streams(), label="events")
    batches = data.draw(deliveries_in_batches(events), label="batches")
    _converges(events, batches)


def _converges(events: list[Event], batches: list[list[Delivery]]) -> None:
    user_ids = sorted({str(e.user_id) for e in events})
    event_ids = [str(e.id) for e in events]
    try:
        _apply(_in_order(events))
        in_order = _state(user_ids)
        _forget(user_ids, event_ids)

        _apply(batches)
        shuffled = _state(user_ids)
        assert shuffled == in_order
        _assert_matches_model(shuffled, events)
    finally:
        _forget(user_ids, event_ids)


def _one_by_one(events: list[Event]) -> list[list[Delivery]]:
    return [[Delivery.from_bytes(serialize_event(e), "test/convergence")] for e in events]


def test_two_email_changes_delivered_in_reverse(test_databases):
    account = AccountBuilder().register(T0)
    account.change_email(T0 + timedelta(minutes=1))
    account.change_email(T0 + timedelta(minutes=2))
    events = account.events
    _converges(events, _one_by_one(events[::-1]))
    _converges(events, [[Delivery.from_bytes(serialize_event(e)) for e in events[::-1]]])  # one batch


def test_a_password_change_before_the_registration(test_databases):
    account = AccountBuilder().register(T0)
    account.add("PasswordChanged", {"email": account.email}, T0 + timedelta(hours=1))
    session = account.login(T0 + timedelta(hours=2))
    account.add(
        "SessionEnded", {"session_id": str(session), "reason": "password-change"}, T0 + timedelta(hours=3)
    )
    _converges(account.events, _one_by_one(account.events[::-1]))


def test_duplicates_of_each_event_type_change_nothing(test_databases):
    account = AccountBuilder().register(T0)
    session = account.login(T0 + timedelta(minutes=1))
    account.add(
        "UserLoginFailed", {"email": account.email, "reason": "invalid_password"}, T0 + timedelta(minutes=2)
    )
    account.add("SessionRefreshed", {"session_id": str(session)}, T0 + timedelta(minutes=3))
    account.role("UserRoleGranted", "admin", T0 + timedelta(minutes=4))
    account.role("UserRoleRevoked", "admin", T0 + timedelta(minutes=5))
    account.add("PasswordChanged", {"email": account.email}, T0 + timedelta(minutes=6))
    account.change_email(T0 + timedelta(minutes=7))
    account.add("UserDeactivated", {"reason": "abuse"}, T0 + timedelta(minutes=8))
    account.add(
        "SessionEnded", {"session_id": str(session), "reason": "deactivation"}, T0 + timedelta(minutes=8)
    )
    account.add("UserReactivated", {}, T0 + timedelta(minutes=9))
    events = account.events
    # Every type once, but UserDeleted: an erased account is its own property
    # (tests/integration/test_erasure_projection.py, duplicates included).
    assert {e.type for e in events} == set(TIMELINE_FIELDS) - {"UserDeleted"}
    # Each event three times: in a batch of its own, twice in one batch, and in a final batch of all.
    batches = [
        *_one_by_one(events),
        [Delivery.from_bytes(serialize_event(e)) for e in events for _ in (1, 2)],
    ]
    batches.append([Delivery.from_bytes(serialize_event(e)) for e in events[::-1]])
    _converges(events, batches)
