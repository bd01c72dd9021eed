"""The notifier without servers: which mail each event calls for and its text, and the
consumer's hand-off (commits only after a confirmed publish) with a fake consumer."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from event_contract import Delivery, new_event
from notifier.handoff import Notifier
from notifier.mails import KINDS, mails_for
from notifier.payload import batch_repr
from settings import load_settings
from tests.unit.test_projector_handoff import TOPIC, FakeClock, FakeConsumer, _messages

USER = uuid.UUID("00000000-0000-4000-8000-000000000001")
SENDER = "CQRS user service <no-reply@cqrs.localhost>"


def _event(kind: str, data: dict, sequence: int = 2):
    return new_event(kind, USER, sequence, data, time=datetime(2026, 1, 2, 3, 4, tzinfo=UTC))


def test_each_mail_goes_to_the_right_address_with_what_it_must_say():
    expires = datetime.now(UTC) + timedelta(minutes=15)
    code = mails_for(
        _event(
            "EmailChangeRequested",
            {"new_email": "new@example.com", "code": "042137", "expires_at": expires.isoformat()},
        )
    )
    password = mails_for(_event("PasswordChanged", {"email": "ada@example.com"}))
    changed = mails_for(
        _event("EmailChanged", {"email": "new@example.com", "previous_email": "ada@example.com"})
    )
    sign_in = mails_for(
        _event(
            "SessionStarted",
            {
                "session_id": str(uuid.uuid4()),
                "email": "ada@example.com",
                "ip": "203.0.113.7",
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
                "new_device": True,
            },
        )
    )
    assert [m.kind for m in code + password + changed + sign_in] == list(KINDS)
    [code], [password], [changed], [sign_in] = code, password, changed, sign_in
    assert code.to == "new@example.com" and "042137" in code.body and code.expires_at == expires
    assert password.to == "ada@example.com" and "password" in password.subject.lower()
    assert changed.to == "ada@example.com" and "new@example.com" in changed.body  # the old address is told
    assert (
        sign_in.to == "ada@example.com" and "203.0.113.7" in sign_in.body and "Firefox/140.0" in sign_in.body
    )


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("UserRegistered", {"email": "ada@example.com", "roles": ["user"]}),
        ("UserLoggedIn", {"email": "ada@example.com"}),
        ("UserLoginFailed", {"email": "ada@example.com", "reason": "invalid_password"}),
        (
            "SessionStarted",
            {"session_id": str(uuid.uuid4()), "email": "ada@example.com", "new_device": False},
        ),
        ("SessionStarted", {"session_id": str(uuid.uuid4()), "email": "ada@example.com"}),
        ("SessionEnded", {"session_id": str(uuid.uuid4()), "reason": "logout"}),
        ("SessionRefreshed", {"session_id": str(uuid.uuid4())}),
        ("UserDeactivated", {"reason": "spam"}),
        ("UserReactivated", {}),
        ("UserRoleGranted", {"role": "admin", "roles": ["admin", "user"]}),
    ],
)
def test_other_events_send_nothing(kind, data):
    assert mails_for(_event(kind, data)) == []


def test_a_code_past_its_expiry_is_expired():
    expires = datetime(2026, 1, 2, 3, 19, tzinfo=UTC)
    [mail] = mails_for(
        _event(
            "EmailChangeRequested",
            {"new_email": "n@example.com", "code": "123456", "expires_at": expires.isoformat()},
        )
    )
    assert not mail.expired(expires - timedelta(seconds=1))
    assert mail.expired(expires) and mail.expired(expires + timedelta(days=1))
    [other] = mails_for(_event("PasswordChanged", {"email": "ada@example.com"}))
    assert not other.expired(datetime.max.replace(tzinfo=UTC))


def test_the_message_is_named_by_its_event_and_reads_as_plain_text():
    event = _event(
        "EmailChanged",
        {"email": "a-very-long-new-address-with-hyphens@example.com", "previous_email": "a@b.example"},
    )
    [mail] = mails_for(event)
    message = mail.to_message(SENDER)
    assert message["Message-ID"] == f"<{event.id}.email-changed@cqrs.localhost>"
    assert message["To"] == "a@b.example" and message["From"] == SENDER
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "text/plain" and message["Content-Transfer-Encoding"] == "7bit"
    body = message.get_content()
    assert "a-very-long-new-address-with-hyphens@example.com" in body  # wrapped, never split
    assert max(len(line) for line in body.splitlines()) <= 78


def test_the_task_arguments_show_as_a_count_only():
    assert batch_repr([{"value": "ada@example.com"}] * 3) == "[<3 events>]"


def test_smtp_security_is_one_of_three():
    assert load_settings({"SMTP_SECURITY": "STARTTLS"}).smtp_security == "starttls"
    with pytest.raises(ValueError, match="SMTP_SECURITY"):
        load_settings({"SMTP_SECURITY": "ssl"})


# --- the hand-off -------------------------------------------------------------------------


class StoppingConsumer(FakeConsumer):
    """Sets ``stop`` once every message was taken and a poll came back empty."""

    stop: threading.Event

    def poll(self, timeout: float):
        message = super().poll(timeout)
        if message is None and self.position >= len(self.messages):
            self.stop.set()
        return message


def _notifier(count: int, publish, depth=lambda: 0) -> tuple[Notifier, StoppingConsumer, threading.Event]:
    stop = threading.Event()
    consumer = StoppingConsumer(_messages(count), FakeClock())
    consumer.stop = stop
    notifier = Notifier(
        consumer=consumer,  # type: ignore[arg-type]
        topic=TOPIC,
        publish=publish,
        queue_depth=depth,
        batch_size=10,
        max_queued_tasks=100,
        poll_timeout=0.1,
        clock=consumer.clock,
    )
    return notifier, consumer, stop


def test_the_raw_records_are_handed_over_and_offsets_follow_each_confirmed_publish():
    published: list[list[dict]] = []
    notifier, consumer, stop = _notifier(25, published.append)
    notifier.run(stop)
    assert [len(b) for b in published] == [10, 10, 5]
    assert consumer.commits == [[(0, 10)], [(0, 20)], [(0, 25)]]
    first = Delivery.from_dict(published[0][0])
    assert first.source == f"{TOPIC}/0/0" and first.raw() == consumer.messages[0].value()
    assert consumer.closed and notifier.events_sent == 25


def test_a_failed_publish_commits_nothing_and_the_same_batch_goes_again():
    attempts: list[list[str]] = []
    holder: dict[str, FakeConsumer] = {}

    def publish(batch: list[dict]) -> None:
        attempts.append([d["source"] for d in batch])
        if len(attempts) < 3:
            assert holder["consumer"].commits == []
            raise ConnectionError("broker nacked")

    notifier, consumer, stop = _notifier(5, publish)
    holder["consumer"] = consumer
    notifier.run(stop)
    assert len(attempts) == 3 and attempts[0] == attempts[1] == attempts[2]
    assert consumer.commits == [[(0, 5)]]


def test_a_deep_notifications_queue_pauses_the_consumer_which_keeps_polling():
    depth = {"value": 500}
    published: list[int] = []
    notifier, consumer, stop = _notifier(30, lambda batch: published.append(len(batch)))

    def queue_depth() -> int:
        if consumer.polls_while_paused >= 20:
            depth["value"] = 10
        return depth["value"]

    notifier.queue_depth = queue_depth
    notifier.run(stop)
    assert consumer.pauses >= 1 and consumer.resumes >= 1 and consumer.polls_while_paused >= 20
    assert sum(published) == 30 and consumer.commits[-1] == [(0, 30)]


def test_settings_name_the_notifiers_own_group_and_database():
    settings = replace(load_settings({}), consumer_group="query-projector")
    assert settings.notifier_group_id == "notifier" != settings.consumer_group
    assert settings.notifier_database_url.split("/")[-1] == "notify_db"
