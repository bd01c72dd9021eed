"""Bursts of events, exact counts in the read model, and "the pipeline is idle" for fault tests."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from event_contract import Event, new_event, serialize_event
from settings import ROOT
from tests.support.environment import TEST_ENV, TEST_SETTINGS
from tests.support.read_model import auth_engine, rows, scalar
from tests.support.system import PASSWORD
from tests.support.waiting import wait_until

VHOST = TEST_ENV["CELERY_BROKER_URL"].rsplit("/", 1)[1]


# --- building and producing events ------------------------------------------------------


@dataclass
class Burst:
    """What a test sent: its users (with how many logins each should count) and its event ids."""

    events: list[Event] = field(default_factory=list)  # when built here rather than over HTTP
    users: dict[uuid.UUID, dict[str, int]] = field(default_factory=dict)
    event_ids: list[uuid.UUID] = field(default_factory=list)

    @property
    def user_ids(self) -> list[uuid.UUID]:
        return list(self.users)

    @property
    def logins(self) -> int:
        return sum(u["logins"] + u["failures"] for u in self.users.values())

    def add_user(self, user_id: str | uuid.UUID, event_id: str | uuid.UUID) -> None:
        """A user registered over HTTP (version 1, no logins yet)."""
        self.users[uuid.UUID(str(user_id))] = {"logins": 0, "failures": 0, "version": 1}
        self.event_ids.append(uuid.UUID(str(event_id)))

    def add_login(self, user_id: str | uuid.UUID, event_id: str | uuid.UUID) -> None:
        """A login over HTTP: its UserLoggedIn (``event_id``, the answer's) and SessionStarted."""
        user = self.users[uuid.UUID(str(user_id))]
        user["logins"] += 1
        user["version"] += 2
        self.event_ids.append(uuid.UUID(str(event_id)))


def user_histories(
    users: int, logins: int = 3, failures: int = 1, tag: str = "burst", lifecycle: bool = False
) -> Burst:
    """``users`` fresh users, each registered, then ``failures`` failed and ``logins`` good logins;
    with ``lifecycle``, then the rest of an account's life too (``lifecycle_events``)."""
    burst = Burst()
    start = datetime.now(UTC).replace(microsecond=0)
    for n in range(users):
        user = uuid.uuid4()
        email = f"{tag}-{user.hex[:12]}@example.com"
        history = [new_event("UserRegistered", user, 1, {"email": email, "roles": ["user"]}, time=start)]
        for _ in range(failures):
            history.append(
                new_event(
                    "UserLoginFailed",
                    user,
                    len(history) + 1,
                    {"email": email, "reason": "invalid_password", "ip": "10.0.0.1"},
                    time=start + timedelta(seconds=len(history), microseconds=n),
                )
            )
        for k in range(logins):
            history.append(
                new_event(
                    "UserLoggedIn",
                    user,
                    len(history) + 1,
                    {"email": email, "ip": "10.0.0.2", "user_agent": f"burst/{k}"},
                    time=start + timedelta(seconds=len(history), microseconds=n),
                )
            )
        if lifecycle:
            later = start + timedelta(seconds=len(history))
            history.extend(lifecycle_events(user, email, len(history), later))
        burst.events.extend(history)
        burst.event_ids.extend(e.id for e in history)
        burst.users[user] = {
            "logins": sum(e.type == "UserLoggedIn" for e in history),
            "failures": failures,
            "version": len(history),
        }
    return burst


def lifecycle_events(user: uuid.UUID, email: str, version: int, start: datetime) -> list[Event]:
    """After ``version``: a login that starts a session, its refresh, a password change, an email
    change (requested, confirmed), a deactivation that ends the session, a reactivation."""
    session = str(uuid.uuid4())
    new_email = f"changed-{user.hex[:12]}@example.com"
    device = {"ip": "10.0.0.3", "user_agent": "life/1"}
    expires_at = (start + timedelta(minutes=15)).isoformat()
    steps: list[tuple[str, dict[str, Any]]] = [
        ("UserLoggedIn", {"email": email, **device, "session_id": session}),
        ("SessionStarted", {"session_id": session, "email": email, **device, "new_device": True}),
        ("SessionRefreshed", {"session_id": session}),
        ("PasswordChanged", {"email": email}),
        ("EmailChangeRequested", {"new_email": new_email, "code": "482916", "expires_at": expires_at}),
        ("EmailChanged", {"email": new_email, "previous_email": email}),
        ("UserDeactivated", {"reason": "test"}),
        ("SessionEnded", {"session_id": session, "reason": "deactivation"}),
        ("UserReactivated", {}),
    ]
    return [
        new_event(kind, user, version + n, data, time=start + timedelta(seconds=n))
        for n, (kind, data) in enumerate(steps, start=1)
    ]


def producer() -> Producer:
    return Producer(
        {"bootstrap.servers": TEST_SETTINGS.kafka_bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )


def produce(events: Iterable[Event], topic: str | None = None, out: Producer | None = None) -> None:
    """Produce events keyed by user id, as the relay does, and wait for every acknowledgement."""
    produce_raw(((str(e.user_id).encode(), serialize_event(e)) for e in events), topic, out)


def produce_raw(
    records: Iterable[tuple[bytes | None, bytes | None]],
    topic: str | None = None,
    out: Producer | None = None,
) -> None:
    topic = topic or TEST_SETTINGS.kafka_topic
    out = out or producer()
    failures: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    for key, value in records:
        out.produce(topic, key=key, value=value, on_delivery=report)
        out.poll(0)
    assert out.flush(60) == 0, "records still unacknowledged after 60 s"
    assert not failures, failures[:3]


class PacedProducer(threading.Thread):
    """Produces events in small chunks over ``seconds``, so a fault can hit mid-stream."""

    def __init__(self, events: list[Event], seconds: float, chunks: int = 20) -> None:
        super().__init__(daemon=True)
        self.events = events
        self.pause = seconds / chunks
        self.chunk = max(1, -(-len(events) // chunks))
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            out = producer()
            for start in range(0, len(self.events), self.chunk):
                part = self.events[start : start + self.chunk]
                produce(part, out=out)
                self.sent += len(part)
                time.sleep(self.pause)  # pacing the producer, not waiting for a result
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self, timeout: float = 120.0) -> None:
        self.join(timeout)
        assert not self.is_alive(), "the paced producer did not finish"
        if self.error is not None:
            raise self.error
        assert self.sent == len(self.events)


# --- exact counts ------------------------------------------------------------------------


def projected_counts(burst: Burst) -> dict[str, int]:
    """What the read model holds for the burst's users and events (all exact counts)."""
    users = [str(u) for u in burst.user_ids]
    events = [str(e) for e in burst.event_ids]
    [row] = rows(
        "SELECT count(*) AS users,"
        " coalesce(sum(login_count), 0) AS login_count,"
        " coalesce(sum(failed_login_count), 0) AS failed_login_count,"
        " coalesce(sum(version), 0) AS version_sum"
        " FROM read_model.users WHERE id = ANY(CAST(:ids AS uuid[])) AND registered_at IS NOT NULL",
        ids=users,
    )
    [history] = rows(
        "SELECT count(*) AS rows, count(DISTINCT event_id) AS distinct_events"
        " FROM read_model.login_history WHERE user_id = ANY(CAST(:ids AS uuid[]))",
        ids=users,
    )
    processed = scalar(
        "SELECT count(*) FROM read_model.processed_events WHERE event_id = ANY(CAST(:ids AS uuid[]))",
        ids=events,
    )
    timeline = scalar(
        "SELECT count(*) FROM read_model.timeline WHERE user_id = ANY(CAST(:ids AS uuid[]))", ids=users
    )
    return {
        "processed_events": processed,
        "users": row["users"],
        "login_count": row["login_count"],
        "failed_login_count": row["failed_login_count"],
        "version_sum": row["version_sum"],
        "login_history": history["rows"],
        "login_history_distinct": history["distinct_events"],
        "timeline": timeline,
    }


def expected_counts(burst: Burst) -> dict[str, int]:
    return {
        "processed_events": len(burst.event_ids),
        "users": len(burst.users),
        "login_count": sum(u["logins"] for u in burst.users.values()),
        "failed_login_count": sum(u["failures"] for u in burst.users.values()),
        "version_sum": sum(u["version"] for u in burst.users.values()),
        "login_history": burst.logins,
        "login_history_distinct": burst.logins,
        # One timeline row per event of each user: its versions are 1..version.
        "timeline": sum(u["version"] for u in burst.users.values()),
    }


def assert_projected_exactly_once(burst: Burst, timeout: float = 90.0) -> dict[str, int]:
    """Wait until every event of the burst is projected, then, with the pipeline idle, check
    that nothing was applied twice (a late duplicate would show in the counters)."""
    expected = expected_counts(burst)
    wait_until(
        lambda: projected_counts(burst)["processed_events"] >= expected["processed_events"],
        timeout=timeout,
        interval=0.25,
        what=f"{expected['processed_events']} events projected",
    )
    wait_pipeline_idle()
    counts = projected_counts(burst)
    assert counts == expected
    return counts


# --- is the pipeline idle? ----------------------------------------------------------------


def unpublished(burst: Burst) -> int:
    """Outbox rows of the burst not yet published."""
    return scalar(
        "SELECT count(*) FROM outbox WHERE event_id = ANY(CAST(:ids AS uuid[])) AND published_at IS NULL",
        engine=auth_engine(),
        ids=[str(e) for e in burst.event_ids],
    )


def committed_burst(tag: str) -> Burst:
    """Every command the write side committed for the tag's users, as a burst to check."""
    burst = Burst()
    events = rows(
        "SELECT o.user_id, o.event_id, o.event_type FROM outbox o JOIN users u ON u.id = o.user_id"
        " WHERE u.email LIKE :pattern ORDER BY o.id",
        engine=auth_engine(),
        pattern=f"{tag}-%",
    )
    for event in events:
        if event["event_type"] == "UserRegistered":
            burst.add_user(event["user_id"], event["event_id"])
    for event in events:
        assert event["event_type"] in ("UserRegistered", "UserLoggedIn", "SessionStarted"), event
        if event["event_type"] == "UserLoggedIn":
            burst.add_login(event["user_id"], event["event_id"])
        elif event["event_type"] == "SessionStarted":  # its version counted with its login
            burst.event_ids.append(uuid.UUID(str(event["event_id"])))
    return burst


def unpublished_outbox_rows() -> int:
    return scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL", engine=auth_engine())


def end_offsets(topic: str | None = None, group: str | None = None) -> tuple[dict[int, int], dict[int, int]]:
    """(high watermarks, committed offsets of the group) per partition of the topic."""
    settings = TEST_SETTINGS
    topic = topic or settings.kafka_topic
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group or settings.consumer_group,
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions
        }
        committed = {
            tp.partition: max(tp.offset, 0)
            for tp in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
        }
        return ends, committed
    finally:
        consumer.close()


def queued_tasks(queue: str = "projections") -> int:
    """Messages in a RabbitMQ queue, ready and unacknowledged (held by a worker, or an ETA retry)."""
    out = subprocess.run(
        [
            "bash",
            str(ROOT / "services" / "rabbitmq.sh"),
            "ctl",
            "list_queues",
            "-p",
            VHOST,
            "name",
            "messages",
            "--no-table-headers",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    counts = dict(line.split() for line in out.splitlines() if line.strip())
    return int(counts.get(queue, 0))


def pipeline_idle() -> bool:
    # Upstream first: an event moving on during the checks is then seen further down.
    if unpublished_outbox_rows():
        return False
    ends, committed = end_offsets()
    if ends != committed:
        return False
    return queued_tasks() == 0


def wait_pipeline_idle(timeout: float = 90.0) -> None:
    wait_until(
        pipeline_idle, timeout=timeout, interval=0.5, what="outbox, topic and projections queue drained"
    )


# --- snapshots ----------------------------------------------------------------------------


def read_model_snapshot(
    user_ids: Iterable[str] | None = None, event_ids: Iterable[str] | None = None
) -> dict[str, list[tuple]]:
    """The read_model tables (processed_at left out), sorted; only the given users/events if named."""
    params: dict[str, Any] = {}
    by_user = by_owner = by_event = ""
    if user_ids is not None:
        params["users"] = sorted({str(u) for u in user_ids})
        by_user = " WHERE id = ANY(CAST(:users AS uuid[]))"
        by_owner = " WHERE user_id = ANY(CAST(:users AS uuid[]))"
    if event_ids is not None:
        params["events"] = sorted({str(e) for e in event_ids})
        by_event = " WHERE event_id = ANY(CAST(:events AS uuid[]))"
    queries = {
        "users": f"SELECT * FROM read_model.users{by_user} ORDER BY id",
        "login_history": f"SELECT * FROM read_model.login_history{by_owner} ORDER BY event_id",
        "sessions": f"SELECT * FROM read_model.sessions{by_owner} ORDER BY session_id",
        "timeline": f"SELECT * FROM read_model.timeline{by_owner} ORDER BY event_id",
        "processed_events": "SELECT event_id, event_type, occurred_at FROM read_model.processed_events"
        f"{by_event} ORDER BY event_id",
    }
    return {name: [tuple(r.values()) for r in rows(sql, **params)] for name, sql in queries.items()}


def topic_events(topic: str | None = None) -> dict[str, dict[str, Any]]:
    """Every valid event of the topic by id (JSON documents), for comparing with the read model."""
    from tests.support.kafka_tools import read_all

    settings = TEST_SETTINGS
    found: dict[str, dict[str, Any]] = {}
    for record in read_all(settings.kafka_bootstrap, topic or settings.kafka_topic):
        document = record_document(record.value)
        if document is not None:
            found[document["id"]] = document
    return found


# --- many commands over HTTP --------------------------------------------------------------


def register_many(system: Any, count: int, tag: str, threads: int = 8) -> list[dict[str, Any]]:
    """``count`` registrations through auth_api, ``threads`` at a time; each must answer 201."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    local = threading.local()

    def register(n: int) -> dict[str, Any]:
        if not hasattr(local, "http"):
            local.http = requests.Session()
        email = f"{tag}-{uuid.uuid4().hex[:12]}-{n}@example.com"
        response = local.http.post(
            f"{system.auth_url}/register", json={"email": email, "password": PASSWORD}, timeout=60
        )
        assert response.status_code == 201, (response.status_code, response.text)
        return {**response.json(), "email": email}

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(register, range(count)))


def login_many(system: Any, users: list[dict[str, Any]], threads: int = 8) -> list[dict[str, Any]]:
    """One successful login per user through auth_api; each must answer 200."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    local = threading.local()

    def login(user: dict[str, Any]) -> dict[str, Any]:
        if not hasattr(local, "http"):
            local.http = requests.Session()
        response = local.http.post(
            f"{system.auth_url}/login", json={"email": user["email"], "password": PASSWORD}, timeout=60
        )
        assert response.status_code == 200, (response.status_code, response.text)
        return {"id": user["id"], **response.json()}

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(login, users))


def record_document(value: bytes | None) -> dict[str, Any] | None:
    """A topic record's JSON object with a UUID ``id``, or None for poison (which may be anything)."""
    try:
        document = json.loads(value or b"")
        if isinstance(document, dict):
            document["id"] = str(uuid.UUID(str(document["id"])))
            return document
    except (ValueError, RecursionError, KeyError, TypeError):
        pass
    return None
