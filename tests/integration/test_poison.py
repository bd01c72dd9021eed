"""Poison events on the real pipeline: dead-lettered with their error, and nothing gets stuck."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from event_contract import new_event, serialize_event
from tests.support.cli import projector_cli
from tests.support.environment import TEST_SETTINGS
from tests.support.pipeline import (
    Burst,
    assert_projected_exactly_once,
    produce,
    produce_raw,
    user_histories,
)
from tests.support.read_model import query_engine, read_user, rows
from tests.support.waiting import wait_until


def _envelope(token: str, **changes) -> dict:
    """A valid UserRegistered envelope (unique by ``token``), then ``changes`` applied."""
    document = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": "UserRegistered",
        "source": "/tests",
        "subject": str(uuid.uuid4()),
        "time": datetime.now(UTC).isoformat(),
        "sequence": 1,
        "datacontenttype": "application/json",
        "data": {"email": f"poison-{token}@example.com", "roles": ["user"]},
    }
    for key, value in changes.items():
        if value is _DROP:
            document.pop(key)
        else:
            document[key] = value
    return document


_DROP = object()


def _json(document) -> bytes:
    return json.dumps(document).encode()


def _poisons(token: str) -> dict[str, tuple[bytes | None, str]]:
    """Every kind of poison, each unique to this test run, with a piece of its expected error."""
    deep = b'["' + token.encode() + b'",' + b"[" * 100_000 + b"]" * 100_000 + b"]"
    return {
        "bad JSON": (b'{"id": "' + token.encode() + b'", "type": ', "not JSON"),
        "not UTF-8": (b"\xff\xfe" + token.encode() + b"\x80\x81", "not JSON"),
        "unknown type": (_json(_envelope(token, type="UserMoved")), "unknown event type 'UserMoved'"),
        "missing subject": (_json(_envelope(token, subject=_DROP)), "subject"),
        "mistyped sequence": (_json(_envelope(token, sequence="1")), "sequence"),
        "mistyped data": (
            _json(_envelope(token, data={"email": 42, "roles": ["user"]})),
            "invalid UserRegistered data",
        ),
        "JSON array": (_json(["UserRegistered", token]), "not a JSON object"),
        "JSON string": (_json(f"UserRegistered {token}"), "not a JSON object"),
        # json.loads raises RecursionError here, which is no ValueError.
        "deeply nested JSON": (deep, "not JSON"),
        # Year 1 with a positive offset is year 0 in UTC: OverflowError, no ValueError.
        "time out of range": (
            _json(_envelope(token, time="0001-01-01T00:30:00+01:00")),
            "time",
        ),
        # PostgreSQL text cannot hold NUL: not in the raw value, nor in a parsed field.
        "NUL byte in the value": (b'{"id": "' + token.encode() + b'\x00"}', "not JSON"),
        "NUL in the type": (_json(_envelope(token, type="User\u0000Deleted")), "unknown event type"),
        # These pass the contract and break only in the database (the batch is split).
        "sequence beyond integer": (
            _json(_envelope(token, sequence=2**31)),
            "out of range",
        ),
        "NUL in the email": (
            _json(_envelope(token, data={"email": f"nul\u0000{token}@example.com"})),
            "NUL",
        ),
        # A valid event keyed to another user sits in that user's partition: out of order.
        "key of another user": (
            _json(_envelope(token, source="/tests/misrouted")),
            "is not the event's user",
        ),
    }


def _key_for(value: bytes | None, fallback: bytes) -> bytes:
    """Poison is keyed like the relay keys events (by its subject), when it has one; the
    misrouted event deliberately keeps a good user's key."""
    try:
        document = json.loads(value or b"")
        if isinstance(document, dict) and document.get("source") != "/tests/misrouted":
            return str(document["subject"]).encode()
    except (ValueError, RecursionError, KeyError):
        pass
    return fallback


def _dead_letters(fingerprints: list[str]) -> list[dict]:
    return rows(
        "SELECT * FROM dead_letters WHERE fingerprint = ANY(:fps) ORDER BY id", fps=sorted(fingerprints)
    )


def test_poison_is_dead_lettered_among_good_events_and_nothing_is_stuck(system, settings):
    token = uuid.uuid4().hex
    poisons = _poisons(token)
    before = user_histories(30, logins=2, failures=1, tag="before-poison")  # 120 events
    after = user_histories(5, logins=1, failures=0, tag="after-poison")  # 10 events
    # Poison sits between good events, in the partitions of good users: batches mix both.
    records: list[tuple[bytes | None, bytes | None]] = []
    good = [(str(e.user_id).encode(), serialize_event(e)) for e in before.events]
    for n, (value, _) in enumerate(poisons.values()):
        records.extend(good[n * 8 : (n + 1) * 8])
        records.append((_key_for(value, good[n * 8][0]), value))
    records.extend(good[len(poisons) * 8 :])
    records.append((None, None))  # a tombstone: no value at all
    produce_raw(records)
    produce(after.events)  # produced after every poison: must still be projected

    assert_projected_exactly_once(after)
    assert_projected_exactly_once(before)
    fingerprints = {name: hashlib.sha256(value or b"").hexdigest() for name, (value, _) in poisons.items()}
    empty = hashlib.sha256(b"").hexdigest()
    letters = {row["fingerprint"]: row for row in _dead_letters([*fingerprints.values(), empty])}
    missing = [name for name, fp in fingerprints.items() if fp not in letters]
    assert not missing, f"not dead-lettered: {missing}"
    assert len(letters) == len(poisons) + 1
    for name, (value, expected_error) in poisons.items():
        letter = letters[fingerprints[name]]
        assert expected_error in letter["error"], (name, letter["error"])
        assert letter["resolved_at"] is None and letter["attempts"] >= 1
        assert letter["source"].startswith(settings.kafka_topic + "/")
        raw = letter["raw"].encode() if letter["raw_encoding"] == "utf-8" else None
        if raw is not None:
            assert raw == value, name  # kept byte for byte, for inspection and replay
    assert "not JSON" in letters[empty]["error"]


def test_a_batch_with_an_event_the_database_rejects_is_split(system):
    """The whole batch is one task: only the event that breaks the database is dead-lettered."""
    from celery_config.app import PROJECT_TASK, make_celery
    from event_contract import Delivery

    burst = user_histories(20, logins=1, failures=1, tag="split")  # 60 events
    token = uuid.uuid4().hex
    breaking = _json(_envelope(token, sequence=2**31))  # valid by contract; integer column overflows
    deliveries = [Delivery.from_bytes(serialize_event(e), "test/split") for e in burst.events]
    deliveries.insert(30, Delivery.from_bytes(breaking, "test/split"))
    batch = [d.to_dict() for d in deliveries]
    make_celery(TEST_SETTINGS).send_task(PROJECT_TASK, args=[batch], queue="projections")

    assert_projected_exactly_once(burst)
    [letter] = _dead_letters([hashlib.sha256(breaking).hexdigest()])
    assert "integer out of range" in letter["error"]
    assert letter["source"] == "test/split"
    assert "applying one by one" in system.processes.log_text("projection_worker")


def _operator(*args: str) -> str:
    result = projector_cli(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _listed(output: str, letter_id: int) -> str | None:
    return next((line for line in output.splitlines() if line.split("\t")[0] == str(letter_id)), None)


@pytest.fixture
def users_refuse_blocked_emails():
    """A read-model constraint that a registration can break (a stand-in for a bug fixed later)."""
    name = f"test_no_blocked_{uuid.uuid4().hex[:8]}"
    with query_engine().begin() as conn:
        conn.execute(
            text(
                f"ALTER TABLE read_model.users ADD CONSTRAINT {name}"
                " CHECK (email IS NULL OR email NOT LIKE 'blocked-%') NOT VALID"
            )
        )

    def drop() -> None:
        with query_engine().begin() as conn:
            conn.execute(text(f"ALTER TABLE read_model.users DROP CONSTRAINT IF EXISTS {name}"))

    try:
        yield drop
    finally:
        drop()


def test_dead_letters_can_be_listed_and_replayed_after_a_fix(system, users_refuse_blocked_emails):
    token = uuid.uuid4().hex
    user = uuid.uuid4()
    blocked = new_event("UserRegistered", user, 1, {"email": f"blocked-{token}@example.com"})
    unfixable = b'{"broken": "' + token.encode()
    produce_raw([(str(user).encode(), serialize_event(blocked)), (None, unfixable)])

    def letters():
        found = _dead_letters(
            [hashlib.sha256(serialize_event(blocked)).hexdigest(), hashlib.sha256(unfixable).hexdigest()]
        )
        return found if len(found) == 2 else None

    fixable_letter, poison_letter = sorted(
        wait_until(letters, timeout=30, what="both events dead-lettered"),
        key=lambda row: row["event_id"] is None,
    )
    assert "check constraint" in fixable_letter["error"]
    assert fixable_letter["event_id"] == str(blocked.id)

    listing = _operator("dead-letters", "list")
    assert "\topen\t" in _listed(listing, fixable_letter["id"])
    assert f"event={blocked.id}" in _listed(listing, fixable_letter["id"])
    assert "not JSON" in _listed(listing, poison_letter["id"])

    # Before the fix, replay changes nothing and says so.
    out = _operator("dead-letters", "replay", str(fixable_letter["id"]))
    assert "replayed 1, resolved 0, still failing 1" in out
    assert read_user(str(user)) is None

    users_refuse_blocked_emails()  # the fix
    out = _operator("dead-letters", "replay", str(fixable_letter["id"]), str(poison_letter["id"]))
    assert "replayed 2, resolved 1, still failing 1" in out
    projected = read_user(str(user))
    assert projected is not None and projected["email"] == f"blocked-{token}@example.com"

    listing = _operator("dead-letters", "list")
    assert _listed(listing, fixable_letter["id"]) is None  # resolved: no longer listed
    assert "\topen\t" in _listed(listing, poison_letter["id"])
    assert "\tresolved\t" in _listed(_operator("dead-letters", "list", "--all"), fixable_letter["id"])
    [still_open] = _dead_letters([poison_letter["fingerprint"]])
    assert still_open["attempts"] == poison_letter["attempts"] + 1  # replayed once, failed again
    burst = Burst()
    burst.users[user] = {"logins": 0, "failures": 0, "version": 1}
    burst.event_ids.append(blocked.id)
    assert_projected_exactly_once(burst)
