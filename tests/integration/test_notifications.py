"""The notifier against the real servers: Kafka (group ``notifier``), RabbitMQ (queue
``notifications``), PostgreSQL (``notify_db``) and the real mail catcher (aiosmtpd).

Each kind of mail arrives once; a redelivered event and a full replay of the topic send
nothing twice; a failing SMTP server is retried until the mail goes; a worker killed before
it sends loses nothing, and one killed in the crash window (mail sent, claim not committed)
gives exactly one second copy with the same Message-ID, as the README says.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Consumer, TopicPartition

from event_contract import Event, new_event
from settings import ROOT
from tests.support import environment
from tests.support.environment import TEST_SETTINGS
from tests.support.notifications import inbox, ledger_rows, mail_catcher, mail_id, message_ids
from tests.support.pipeline import end_offsets, produce, queued_tasks
from tests.support.processes import ProcessGroup, session_processes
from tests.support.waiting import wait_until

GROUP = TEST_SETTINGS.notifier_group_id
WORKER = "notification_worker"
OUTCOMES = re.compile(r"notifier: sent (\d+), duplicates (\d+), expired (\d+), rejected (\d+)")


@pytest.fixture(scope="module")
def notifier(test_databases, broker_vhost, topic) -> Iterator[ProcessGroup]:
    """The session's mail catcher, the notifier and one notification worker, by PID."""
    mail_catcher("start")
    group = session_processes(ROOT / ".data" / "test-logs" / environment.RUN_ID / "notifier")
    try:
        group.start("notifier")
        group.start(WORKER)
        group.wait_for_log(WORKER, "ready", timeout=120)
        yield group
    finally:
        group.stop_all()
        mail_catcher("stop")


def notifier_idle() -> bool:
    ends, committed = end_offsets(group=GROUP)
    return ends == committed and queued_tasks("notifications") == 0


def wait_idle(timeout: float = 120.0) -> None:
    wait_until(notifier_idle, timeout=timeout, interval=0.5, what="topic read by the notifier, queue drained")


def account(tag: str) -> tuple[uuid.UUID, str]:
    user = uuid.uuid4()
    return user, f"{tag}-{user.hex[:10]}@example.com"


def lifecycle(user: uuid.UUID, email: str) -> tuple[list[Event], dict[str, tuple[Event, str]]]:
    """A user's events with every kind of mail; the mails expected, by kind: (event, recipient)."""
    start = datetime.now(UTC) - timedelta(minutes=5)
    new_email = f"new-{email}"

    def event(kind: str, data: dict, n: int) -> Event:
        return new_event(kind, user, n, data, time=start + timedelta(seconds=n))

    session = str(uuid.uuid4())
    events = [
        event("UserRegistered", {"email": email, "roles": ["user"]}, 1),
        event(
            "UserLoggedIn",
            {"email": email, "ip": "10.1.2.3", "user_agent": "Firefox/140", "session_id": session},
            2,
        ),
        event(
            "SessionStarted",
            {
                "session_id": session,
                "email": email,
                "ip": "10.1.2.3",
                "user_agent": "Firefox/140",
                "new_device": True,
            },
            3,
        ),
        event(
            "SessionStarted",
            {"session_id": str(uuid.uuid4()), "email": email, "ip": "10.1.2.4", "user_agent": "Firefox/140"},
            4,
        ),
        event("PasswordChanged", {"email": email}, 5),
        event(
            "EmailChangeRequested",
            {
                "new_email": new_email,
                "code": "123456",
                "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            },
            6,
        ),
        event("EmailChanged", {"email": new_email, "previous_email": email}, 7),
        event("SessionEnded", {"session_id": session, "reason": "logout"}, 8),
    ]
    expected = {
        "new-device-sign-in": (events[2], email),
        "password-changed": (events[4], email),
        "email-verification-code": (events[5], new_email),
        "email-changed": (events[6], email),
    }
    return events, expected


def outcome_totals(group: ProcessGroup, after: int) -> list[int]:
    totals = [0, 0, 0, 0]
    for match in OUTCOMES.finditer(group.log_text(WORKER)[after:]):
        totals = [t + int(v) for t, v in zip(totals, match.groups(), strict=True)]
    return totals


def reset_group_to_zero() -> None:
    """What `kafka-consumer-groups --reset-offsets --to-earliest` does, for the notifier's group."""
    consumer = Consumer(
        {"bootstrap.servers": TEST_SETTINGS.kafka_bootstrap, "group.id": GROUP, "enable.auto.commit": False}
    )
    try:
        topic = TEST_SETTINGS.kafka_topic
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.commit(offsets=[TopicPartition(topic, p, 0) for p in sorted(partitions)], asynchronous=False)
    finally:
        consumer.close()


def test_each_kind_of_mail_arrives_once_and_a_redelivery_sends_nothing(notifier):
    user, email = account("kinds")
    events, expected = lifecycle(user, email)
    produce(events)
    wait_until(
        lambda: len(ledger_rows([e.id for e in events])) == len(expected),
        timeout=120,
        interval=0.25,
        what="every mail claimed",
    )
    wait_idle()
    for kind, (event, to) in expected.items():
        assert message_ids(to)[mail_id(event.id, kind)] == 1, kind
    assert ledger_rows([e.id for e in events]) == {
        (str(e.id), kind): "sent" for kind, (e, _) in expected.items()
    }
    # Three mails to the old address (sign-in, password, email changed), one to the new.
    assert len(inbox(email)) == 3 and len(inbox(f"new-{email}")) == 1

    by_kind = {m.message_id: m for m in inbox(email) + inbox(f"new-{email}")}
    code = by_kind[mail_id(events[5].id, "email-verification-code")]
    assert code.subject == "Your verification code" and "123456" in code.body()
    sign_in = by_kind[mail_id(events[2].id, "new-device-sign-in")]
    assert "Firefox/140" in sign_in.body() and "10.1.2.3" in sign_in.body()
    changed = by_kind[mail_id(events[6].id, "email-changed")]
    assert f"new-{email}" in changed.body()

    # The same records again (a relay that died before marking them, say): nothing is sent.
    mark = len(notifier.log_text(WORKER))
    produce(events)
    wait_idle()
    wait_until(
        lambda: outcome_totals(notifier, mark)[1] == len(expected), timeout=60, what="duplicates logged"
    )
    assert outcome_totals(notifier, mark) == [0, len(expected), 0, 0]
    for kind, (event, to) in expected.items():
        assert message_ids(to)[mail_id(event.id, kind)] == 1, kind


def test_an_expired_code_is_not_sent_and_is_recorded_as_such(notifier):
    user, email = account("expired")
    event = new_event(
        "EmailChangeRequested",
        user,
        2,
        {
            "new_email": f"new-{email}",
            "code": "654321",
            "expires_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
        },
    )
    mark = len(notifier.log_text(WORKER))
    produce([event])
    wait_until(lambda: ledger_rows([event.id]), timeout=120, what="the expired code recorded")
    wait_idle()
    assert ledger_rows([event.id]) == {(str(event.id), "email-verification-code"): "expired"}
    assert inbox(f"new-{email}") == []
    assert "verification code expired before it could be mailed; not sent" in notifier.log_text(WORKER)[mark:]
    assert "654321" not in notifier.log_text(WORKER) and email not in notifier.log_text(WORKER)


def test_a_full_replay_of_the_topic_sends_nothing_twice(notifier):
    user, email = account("replay")
    events, expected = lifecycle(user, email)
    produce(events)
    wait_until(
        lambda: len(ledger_rows([e.id for e in events])) == len(expected), timeout=120, what="mails claimed"
    )
    wait_idle()
    before = message_ids()
    ends, committed = end_offsets(group=GROUP)
    assert ends == committed and sum(ends.values()) >= len(events)

    notifier.stop("notifier")  # SIGTERM: commits and leaves the group
    reset_group_to_zero()
    assert set(end_offsets(group=GROUP)[1].values()) == {0}
    mark = len(notifier.log_text(WORKER))
    notifier.start("notifier")
    wait_until(
        lambda: all(end_offsets(group=GROUP)[1][p] >= end for p, end in ends.items()),
        timeout=180,
        interval=0.5,
        what="the topic re-read",
    )
    wait_idle()

    after = message_ids()
    # (Mails of events others produce meanwhile may join; none that was there may grow.)
    assert {m: after[m] for m in before} == before, "a replay sent a mail again"
    mine = message_ids(email) + message_ids(f"new-{email}")
    assert sorted(mine.values()) == [1] * len(expected)
    # Every mail of the topic came through the workers again and was found claimed.
    sent, duplicates, _, _ = outcome_totals(notifier, mark)
    assert sent == 0 and duplicates >= len(expected)


def test_a_failing_smtp_server_is_retried_until_the_mail_goes(notifier):
    user, email = account("smtp-down")
    event = new_event("PasswordChanged", user, 5, {"email": email})
    mark = len(notifier.log_text(WORKER))
    mail_catcher("stop")
    try:
        produce([event])
        wait_until(
            lambda: len(re.findall(r"notifier: \w+, retry in", notifier.log_text(WORKER)[mark:])) >= 2,
            timeout=120,
            interval=0.2,
            what="two retries while the SMTP server is down",
        )
        assert ledger_rows([event.id]) == {}  # nothing claimed while nothing could be sent
    finally:
        mail_catcher("start")
    wait_until(
        lambda: message_ids(email), timeout=120, interval=0.25, what="the mail after the server came back"
    )
    wait_idle()
    assert message_ids(email) == {mail_id(event.id, "password-changed"): 1}
    assert ledger_rows([event.id]) == {(str(event.id), "password-changed"): "sent"}
    assert email not in notifier.log_text(WORKER)


@pytest.mark.slow
@pytest.mark.parametrize(("phase", "copies"), [("before-send", 1), ("after-send", 2)])
def test_a_worker_killed_mid_way_loses_no_mail(notifier, phase, copies):
    """SIGKILL of the worker holding the mail: before sending, the mail goes once when the task
    comes back; after sending but before the claim commits (the crash window), it goes again,
    with the same Message-ID, so exactly two copies and one distinct mail."""
    user, email = account(f"killed-{phase}")
    event = new_event("PasswordChanged", user, 5, {"email": email})
    notifier.stop(WORKER)
    paused = f"{WORKER}_paused"
    mark = len(notifier.log_text(paused))
    notifier.start(WORKER, {"NOTIFIER_PAUSE_AT": phase}, as_name=paused)
    try:
        produce([event])
        notifier.wait_for_log(paused, f"notifier: paused at {phase}", timeout=120)
        assert notifier.log_text(paused)[mark:].count("notifier: paused at") == 1
        assert len(inbox(email)) == copies - 1  # after-send: the catcher has the first copy
        notifier.kill_and_wait(paused)
        assert ledger_rows([event.id]) == {}  # the claim died with the transaction
    finally:
        notifier.kill(paused)
        notifier.start(WORKER)
    wait_until(lambda: len(inbox(email)) >= copies, timeout=120, interval=0.25, what=f"{copies} cop(ies)")
    wait_idle()
    assert message_ids(email) == {mail_id(event.id, "password-changed"): copies}
    assert ledger_rows([event.id]) == {(str(event.id), "password-changed"): "sent"}


def test_flower_shows_the_notification_workers_and_their_tasks_without_the_events(notifier):
    """Flower (the Procfile's line, on a port of this module's) lists the notifications queue's
    worker and its tasks; a task's arguments show as a count, never addresses or codes."""
    import requests

    from tests.support.environment import TEST_ENV

    port = int(TEST_ENV["FLOWER_PORT"]) + 30  # namespaces move ports by 100
    auth = tuple((TEST_SETTINGS.flower_basic_auth or "").split(":", 1))
    base = f"http://127.0.0.1:{port}"
    user, email = account("flower")
    notifier.start("flower", {"FLOWER_PORT": str(port)}, as_name="flower_notifications")
    try:

        def queues() -> set[str]:
            try:
                response = requests.get(
                    f"{base}/api/workers", auth=auth, params={"refresh": "true"}, timeout=30
                )
            except requests.RequestException:
                return set()
            if response.status_code != 200:
                return set()
            # A worker that did not answer the refresh (one killed earlier) has no queues listed.
            workers = [info for info in response.json().values() if isinstance(info, dict)]
            return {q["name"] for info in workers for q in info.get("active_queues") or []}

        wait_until(
            lambda: "notifications" in queues(), timeout=90, interval=1, what="the notifications worker"
        )
        # Flower sees the tasks that run once it watches.
        produce([new_event("PasswordChanged", user, 5, {"email": email})])

        def mail_tasks() -> list[dict]:
            response = requests.get(
                f"{base}/api/tasks", auth=auth, params={"taskname": "notifications.send_mail"}, timeout=30
            )
            if response.status_code != 200:
                return []
            return [t for t in response.json().values() if t.get("state") == "SUCCESS"]

        tasks = wait_until(
            mail_tasks, timeout=90, interval=1, what="a successful notifications task in Flower"
        )
        for task in tasks:
            assert re.fullmatch(r"\[<\d+ events>\]", task["args"]), task["args"]
        wait_until(lambda: message_ids(email), timeout=60, what="the mail")
        # (The projection tasks of the session's other processes carry the raw events in
        # their arguments; the notification tasks show none of them.)
        page = requests.get(
            f"{base}/api/tasks", auth=auth, params={"taskname": "notifications.send_mail"}, timeout=30
        ).text
        assert "notifications.send_mail" in page and email not in page
    finally:
        notifier.stop("flower_notifications")
