"""The pure folds: what each event does to a user's row, its sessions and its timeline,
whatever the order of the events; and the account at a past time, folded from its timeline."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from event_contract import EVENT_TYPES, Event
from projector.projection.folds import HANDLERS, TIMELINE_FIELDS, BatchFold, fold_events
from read_model.timeline import account_from_timeline
from tests.support.lifecycle import T0, AccountBuilder, account_streams, expected_accounts


@dataclass
class Row:
    """A timeline row as the read API reads it back (the data as stored)."""

    event_type: str
    sequence: int
    occurred_at: datetime
    data: dict[str, Any]


def _rows(batch: BatchFold, user: uuid.UUID) -> list[Row]:
    return [
        Row(r["event_type"], r["sequence"], r["occurred_at"], r["data"])
        for r in batch.timeline
        if r["user_id"] == user
    ]


def test_every_event_type_has_a_fold_and_a_timeline_entry():
    assert set(HANDLERS) == set(EVENT_TYPES) == set(TIMELINE_FIELDS)
    for kind, fields in TIMELINE_FIELDS.items():
        assert set(fields) <= set(EVENT_TYPES[kind].model_fields), kind


def test_two_email_changes_the_later_version_wins_in_any_order():
    account = AccountBuilder().register()
    account.change_email(T0 + timedelta(minutes=2))
    first = account.email
    account.change_email(T0 + timedelta(minutes=1))  # a later version with an earlier clock
    events = account.events
    assert first != account.email
    for order in (events, events[::-1], [events[4], events[0], events[2], events[1], events[3]]):
        [change] = fold_events(order).users.values()
        assert (change.email, change.email_version) == (account.email, 5)


def test_the_email_change_code_is_never_in_the_timeline():
    account = AccountBuilder().register()
    account.change_email(T0, confirm=False)
    request = account.events[-1]
    [row] = [r for r in fold_events(account.events).timeline if r["event_type"] == "EmailChangeRequested"]
    assert row["data"] == {"new_email": request.data["new_email"], "expires_at": request.data["expires_at"]}
    assert request.data["code"] not in row["data"].values()


def test_status_follows_the_highest_version():
    account = AccountBuilder().register()
    account.add("UserDeactivated", {"reason": "abuse"}, T0)
    account.add("UserReactivated", {}, T0 - timedelta(days=1))
    account.add("UserDeactivated", {}, T0 - timedelta(days=2))
    for order in (account.events, account.events[::-1]):
        [change] = fold_events(order).users.values()
        assert (change.status, change.status_version) == ("deactivated", 4)
    [change] = fold_events(account.events[:3]).users.values()
    assert change.status == "active"


def test_a_password_change_before_its_registration():
    account = AccountBuilder().register(T0)
    account.add("PasswordChanged", {"email": account.email}, T0 + timedelta(hours=1))
    [change] = fold_events(account.events[::-1]).users.values()
    assert change.password_changed_at == T0 + timedelta(hours=1)
    assert change.registered_at == T0 and change.email == account.email and change.version == 2


def test_a_session_start_refresh_and_end_merge_in_any_order():
    account = AccountBuilder().register()
    session = account.login(T0 + timedelta(minutes=1), agent="firefox/1")
    account.add("SessionRefreshed", {"session_id": str(session)}, T0 + timedelta(minutes=9))
    account.add("SessionRefreshed", {"session_id": str(session)}, T0 + timedelta(minutes=5))
    account.add("SessionEnded", {"session_id": str(session), "reason": "logout"}, T0 + timedelta(minutes=10))
    for order in (account.events, account.events[::-1]):
        row = fold_events(order).sessions[session]
        assert row["started_at"] == T0 + timedelta(minutes=1)
        assert row["last_used_at"] == T0 + timedelta(minutes=9)
        assert (row["ended_at"], row["end_reason"]) == (T0 + timedelta(minutes=10), "logout")
        assert (row["user_agent"], row["new_device"]) == ("firefox/1", True)


def test_a_second_end_of_a_session_keeps_the_first():
    account = AccountBuilder().register()
    session = str(account.login(T0))
    later, sooner = T0 + timedelta(seconds=5), T0 + timedelta(seconds=3)
    account.add("SessionEnded", {"session_id": session, "reason": "password-change"}, later)
    account.add("SessionEnded", {"session_id": session, "reason": "deactivation"}, sooner)
    for order in (account.events, account.events[::-1]):
        row = fold_events(order).sessions[uuid.UUID(session)]
        assert (row["ended_at"], row["end_reason"]) == (sooner, "deactivation")


def test_the_account_as_of_a_time_folds_the_timeline_up_to_it():
    account = AccountBuilder().register(T0)
    account.login(T0 + timedelta(hours=1))
    first_email = account.email
    account.change_email(T0 + timedelta(hours=2))
    account.add("UserDeactivated", {}, T0 + timedelta(hours=3))
    rows = _rows(fold_events(account.events), account.user)

    def at(moment: datetime):
        return account_from_timeline(account.user, [r for r in rows if r.occurred_at <= moment])

    assert at(T0 - timedelta(seconds=1)) is None  # before the registration
    then = at(T0 + timedelta(hours=1, minutes=30))
    assert (then.email, then.status, then.login_count, then.version) == (first_email, "active", 1, 3)
    now = at(T0 + timedelta(days=1))
    assert (now.email, now.status, now.version) == (account.email, "deactivated", 6)
    assert now.last_login_at == T0 + timedelta(hours=1)


@hypothesis_settings(max_examples=200, deadline=None)
@given(events=account_streams(), data=st.data())
def test_any_order_folds_to_the_in_order_rows_and_the_timeline_agrees(events: list[Event], data):
    in_order = fold_events(sorted(events, key=lambda e: (e.user_id, e.sequence)))
    shuffled = fold_events(data.draw(st.permutations(events)))
    assert {k: v.row() for k, v in shuffled.users.items()} == {k: v.row() for k, v in in_order.users.items()}
    assert shuffled.sessions == in_order.sessions
    assert len(shuffled.timeline) == len(events)
    model = expected_accounts(events)
    for user_id, change in in_order.users.items():
        expected = model[str(user_id)]
        row = change.row()
        assert (row["email"], row["status"], row["version"]) == (
            expected["email"],
            expected["status"],
            expected["version"],
        )
        assert row["password_changed_at"] == expected.get("password_changed_at")
        # The timeline, folded whole, gives the live row (as_of = now is the live view).
        account = account_from_timeline(user_id, _rows(in_order, user_id))
        assert account is not None
        for name in (
            "email",
            "status",
            "registered_at",
            "last_login_at",
            "last_failed_login_at",
            "password_changed_at",
            "login_count",
            "failed_login_count",
            "version",
        ):
            assert getattr(account, name) == row[name], name
        assert account.roles == row["roles"]
