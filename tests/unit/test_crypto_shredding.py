"""Crypto-shredding: personal fields sealed per user, unreadable once the data key is gone."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from event_contract import InvalidEvent, new_event, parse_event, serialize_event
from event_contract.crypto import PERSONAL_FIELDS, KeyUnavailable, MasterKeys, new_data_key

USER = uuid.UUID("00000000-0000-4000-8000-00000000000a")
LOGIN = {
    "email": "ada@example.com",
    "ip": "192.0.2.7",
    "user_agent": "Firefox/1",
    "session_id": str(uuid.uuid4()),
}


class Keys:
    def __init__(self, *keys) -> None:
        self.keys = {(USER, k.key_id): k.secret for k in keys}

    def get(self, user_id, key_id):
        return self.keys.get((user_id, key_id))


def test_personal_fields_are_ciphertext_on_the_wire_and_clear_after_parsing():
    key = new_data_key()
    event = new_event("UserLoggedIn", USER, 2, LOGIN)
    raw = serialize_event(event, key)
    for clear in ("ada@example.com", "192.0.2.7", "Firefox"):
        assert clear.encode() not in raw
    document = json.loads(raw)
    assert document["datakeyid"] == str(key.key_id)
    assert document["data"]["session_id"] == LOGIN["session_id"]  # not personal: in clear
    parsed = parse_event(raw, Keys(key))
    assert parsed.data == event.data and not parsed.forgotten


def test_an_event_whose_key_is_gone_parses_with_its_personal_fields_blank():
    key = new_data_key()
    raw = serialize_event(new_event("UserLoggedIn", USER, 2, LOGIN), key)
    parsed = parse_event(raw, Keys())
    assert parsed.forgotten
    assert parsed.data == {"email": None, "ip": None, "user_agent": None, "session_id": LOGIN["session_id"]}


def test_a_ciphertext_moved_to_another_field_or_event_does_not_open():
    key = new_data_key()
    document = json.loads(serialize_event(new_event("UserLoggedIn", USER, 2, LOGIN), key))
    document["data"]["email"], document["data"]["ip"] = document["data"]["ip"], document["data"]["email"]
    with pytest.raises(InvalidEvent, match="decrypt"):
        parse_event(json.dumps(document), Keys(key))
    other = json.loads(serialize_event(new_event("UserLoggedIn", USER, 3, LOGIN), key))
    other["data"]["email"] = json.loads(serialize_event(new_event("UserLoggedIn", USER, 2, LOGIN), key))[
        "data"
    ]["email"]
    with pytest.raises(InvalidEvent, match="decrypt"):
        parse_event(json.dumps(other), Keys(key))


def test_an_encrypted_event_needs_keys_and_a_clear_field_is_refused():
    key = new_data_key()
    raw = serialize_event(new_event("UserRegistered", USER, 1, {"email": "ada@example.com"}), key)
    with pytest.raises(InvalidEvent, match="no data keys"):
        parse_event(raw)
    document = json.loads(raw)
    document["data"]["email"] = "mallory@example.com"
    with pytest.raises(InvalidEvent, match="not encrypted"):
        parse_event(json.dumps(document), Keys(key))


def test_events_without_personal_data_and_older_clear_events_need_no_key():
    ended = new_event("SessionEnded", USER, 4, {"session_id": str(uuid.uuid4()), "reason": "logout"})
    assert "datakeyid" not in json.loads(serialize_event(ended, new_data_key()))
    clear = serialize_event(new_event("UserRegistered", USER, 1, {"email": "ada@example.com"}))
    assert parse_event(clear).data["email"] == "ada@example.com"


def test_every_personal_field_named_exists_in_its_schema():
    from event_contract import EVENT_TYPES

    for event_type, fields in PERSONAL_FIELDS.items():
        assert set(fields) <= set(EVENT_TYPES[event_type].model_fields), event_type


def test_master_keys_wrap_bound_to_the_user_and_rotate():
    old = MasterKeys.parse(MasterKeys.generate_line("m1"))
    key = new_data_key()
    master_id, wrapped = old.wrap(USER, key)
    assert master_id == "m1" and key.secret not in wrapped
    assert old.unwrap(USER, key.key_id, master_id, wrapped) == key.secret
    with pytest.raises(KeyUnavailable):  # another user's row does not unwrap
        old.unwrap(uuid.uuid4(), key.key_id, master_id, wrapped)
    both = MasterKeys.parse(
        MasterKeys.generate_line("m2") + "," + MasterKeys.generate_line("m1").replace("m1:", "m1-other:")
    )
    assert both.current == "m2"
    with pytest.raises(KeyUnavailable, match="not configured"):
        both.unwrap(USER, key.key_id, "m1", wrapped)


@pytest.mark.parametrize(
    "text", ["", "m1", "m1:not base64!", f"m1:{base64.b64encode(b'short').decode()}", ":" + "A" * 44]
)
def test_malformed_master_keys_are_refused(text):
    with pytest.raises(ValueError):
        MasterKeys.parse(text)
