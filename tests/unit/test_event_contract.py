import json
import uuid
from datetime import UTC, datetime

import pytest

from event_contract import EVENT_TYPES, InvalidEvent, new_event, parse_event, serialize_event

USER = uuid.UUID("2b9f3f56-6d0e-4d59-9c3f-000000000001")


def test_round_trip_keeps_every_attribute():
    event = new_event(
        "UserLoggedIn", USER, 3, {"email": "a@example.com", "ip": "10.0.0.1", "user_agent": "x"}
    )
    parsed = parse_event(serialize_event(event))
    assert parsed == event


def test_envelope_is_cloudevents_1_0():
    event = new_event("UserRegistered", USER, 1, {"email": "a@example.com", "roles": ["user"]})
    document = json.loads(serialize_event(event))
    assert document["specversion"] == "1.0"
    assert document["type"] == "UserRegistered"
    assert document["subject"] == str(USER)
    assert document["sequence"] == 1
    assert document["datacontenttype"] == "application/json"
    assert document["time"].endswith("Z")
    assert set(document) == {
        "specversion",
        "id",
        "type",
        "source",
        "subject",
        "time",
        "sequence",
        "datacontenttype",
        "data",
    }


def test_every_seed_type_is_known():
    assert set(EVENT_TYPES) == {
        "SessionStarted",
        "SessionRefreshed",
        "SessionEnded",
        "PasswordChanged",
        "EmailChangeRequested",
        "EmailChanged",
        "UserDeactivated",
        "UserReactivated",
        "UserDeleted",
        "UserRegistered",
        "UserLoggedIn",
        "UserLoginFailed",
        "UserRoleGranted",
        "UserRoleRevoked",
    }


def test_unknown_optional_fields_are_ignored():
    event = new_event("UserRegistered", USER, 1, {"email": "a@example.com", "roles": ["user"]})
    document = json.loads(serialize_event(event))
    document["traceparent"] = "00-abc"
    document["data"]["nickname"] = "ada"
    parsed = parse_event(json.dumps(document))
    assert parsed.data == {"email": "a@example.com", "roles": ["user"]}


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"{}", "invalid envelope"),
    ],
)
def test_garbage_is_invalid(raw, reason):
    with pytest.raises(InvalidEvent, match=reason):
        parse_event(raw)


def _document(**changes):
    event = new_event("UserLoggedIn", USER, 2, {"email": "a@example.com"})
    document = json.loads(serialize_event(event))
    document.update(changes)
    return json.dumps(document)


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"type": "UserTeleported"}, "unknown event type"),
        ({"sequence": "2"}, "sequence"),
        ({"sequence": 0}, "sequence"),
        ({"subject": "not-a-uuid"}, "subject"),
        ({"time": "yesterday"}, "time"),
        ({"time": "2026-01-01T00:00:00"}, "no offset"),
        ({"specversion": "0.3"}, "specversion"),
        ({"data": {"ip": "1.2.3.4"}}, "email"),
        ({"data": {"email": 5}}, "email"),
    ],
)
def test_invalid_fields_are_named(changes, reason):
    with pytest.raises(InvalidEvent, match=reason):
        parse_event(_document(**changes))


def test_new_event_refuses_data_that_breaks_the_contract():
    with pytest.raises(InvalidEvent):
        new_event("UserRoleGranted", USER, 2, {"role": "admin"})  # roles missing
    with pytest.raises(InvalidEvent):
        new_event("UserRegistered", USER, 0, {"email": "a@example.com"})


def test_time_is_normalized_to_utc():
    from datetime import timedelta, timezone

    local = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    event = new_event("UserLoggedIn", USER, 2, {"email": "a@example.com"}, time=local)
    assert event.time == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
