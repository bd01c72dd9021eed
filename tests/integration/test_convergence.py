"""Convergence on the real query database: any order, duplication and batching of a user's
events gives the read model that in-order, once-only application gives."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import text

from event_contract import Delivery, Event, new_event, serialize_event
from projector.projection.apply import apply_batch
from tests.support.read_model import query_engine, rows

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ROLES = ("admin", "editor", "auditor", "user")
LATER_TYPES = ("UserLoggedIn", "UserLoginFailed", "UserRoleGranted", "UserRoleRevoked")


@st.composite
def user_streams(draw: st.DrawFn) -> list[Event]:
    """Several users, each: UserRegistered v1, then a random mix with consecutive versions."""
    events: list[Event] = []
    for n in range(draw(st.integers(1, 4))):
        user = uuid.uuid4()
        email = f"conv-{user.hex[:10]}-{n}@example.com"
        roles = {"user"}
        # Times are drawn freely (not sorted by version): "latest" must not depend on order.
        moment = st.integers(0, 10**6).map(lambda s: T0 + timedelta(seconds=s))
        events.append(
            new_event("UserRegistered", user, 1, {"email": email, "roles": ["user"]}, time=draw(moment))
        )
        for version in range(2, 2 + draw(st.integers(0, 8))):
            kind = draw(st.sampled_from(LATER_TYPES))
            if kind == "UserLoggedIn":
                data = {"email": email, "ip": draw(st.sampled_from(["10.0.0.1", None]))}
            elif kind == "UserLoginFailed":
                data = {
                    "email": email,
                    "reason": draw(st.sampled_from(["invalid_password", "account_locked"])),
                }
            else:
                role = draw(st.sampled_from(ROLES))
                roles = roles | {role} if kind == "UserRoleGranted" else roles - {role}
                data = {"role": role, "roles": sorted(roles)}
            events.append(new_event(kind, user, version, data, time=draw(moment)))
    return events


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
    return {
        "users": rows(
            "SELECT * FROM read_model.users WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id", ids=user_ids
        ),
        "login_history": rows(
            "SELECT * FROM read_model.login_history"
            " WHERE user_id = ANY(CAST(:ids AS uuid[])) ORDER BY event_id",
            ids=user_ids,
        ),
    }


def _forget(user_ids: list[str], event_ids: list[str]) -> None:
    with query_engine().begin() as conn:
        conn.execute(
            text("DELETE FROM read_model.users WHERE id = ANY(CAST(:ids AS uuid[]))"), {"ids": user_ids}
        )
        conn.execute(
            text("DELETE FROM read_model.login_history WHERE user_id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": user_ids},
        )
        conn.execute(
            text("DELETE FROM read_model.processed_events WHERE event_id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": event_ids},
        )


def _model(events: list[Event]) -> dict[str, dict]:
    """The read model of each user, computed from the stream in plain Python."""
    users: dict[str, dict] = {}
    for event in sorted(events, key=lambda e: (e.user_id, e.sequence)):
        user = users.setdefault(str(event.user_id), {"login_count": 0, "failed_login_count": 0, "logins": 0})
        user["version"] = event.sequence
        if event.type == "UserRegistered":
            user.update(email=event.data["email"], registered_at=event.time, roles=event.data["roles"])
        elif event.type in ("UserRoleGranted", "UserRoleRevoked"):
            user["roles"] = event.data["roles"]
        elif event.type == "UserLoggedIn":
            user["login_count"] += 1
            user["last_login_at"] = max(user.get("last_login_at") or event.time, event.time)
        else:
            user["failed_login_count"] += 1
            user["last_failed_login_at"] = max(user.get("last_failed_login_at") or event.time, event.time)
        user["logins"] += event.type in ("UserLoggedIn", "UserLoginFailed")
    return users


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_order_duplication_and_batching_converges(test_databases, data):
    events = data.draw(user_streams(), label="events")
    batches = data.draw(deliveries_in_batches(events), label="batches")
    user_ids = sorted({str(e.user_id) for e in events})
    event_ids = [str(e.id) for e in events]
    try:
        # The reference: in version order, each event once, one transaction each.
        _apply(
            [
                [Delivery.from_bytes(serialize_event(e))]
                for e in sorted(events, key=lambda e: (e.user_id, e.sequence))
            ]
        )
        in_order = _state(user_ids)
        _forget(user_ids, event_ids)

        _apply(batches)
        shuffled = _state(user_ids)
        assert shuffled == in_order

        model = _model(events)
        assert len(shuffled["users"]) == len(model)
        for row in shuffled["users"]:
            expected = model[str(row["id"])]
            assert row["email"] == expected["email"]
            assert row["registered_at"] == expected["registered_at"]
            assert sorted(row["roles"]) == sorted(expected["roles"])
            assert row["version"] == expected["version"]
            assert row["login_count"] == expected["login_count"]
            assert row["failed_login_count"] == expected["failed_login_count"]
            assert row["last_login_at"] == expected.get("last_login_at")
            assert row["last_failed_login_at"] == expected.get("last_failed_login_at")
        assert len(shuffled["login_history"]) == sum(u["logins"] for u in model.values())
    finally:
        _forget(user_ids, event_ids)
