"""Right to erasure, end to end: delete an account, and nothing of it remains anywhere.

Two users register and log in from distinct addresses and user agents; one changes its
email; one is deleted. After the pipeline settles and the read model is rebuilt, every store
is dumped — every database in full, the whole topic from offset 0, every RabbitMQ queue, every
log under the data folder — and none holds the deleted user's email, address or user agent,
while the stores that keep personal data in clear still hold the other user's.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import requests
from confluent_kafka import Consumer, TopicPartition
from kombu import Connection
from requests.adapters import HTTPAdapter
from sqlalchemy import create_engine, text

from event_contract import parse_event
from event_contract.crypto import personal_fields
from event_contract.keystore import SqlDataKeys, master_keys
from tests.support.cli import projector_cli
from tests.support.environment import DATA_DIR, TEST_SETTINGS
from tests.support.pipeline import wait_pipeline_idle
from tests.support.read_model import auth_engine
from tests.support.system import PASSWORD
from tests.support.waiting import wait_until


class FromAddress(HTTPAdapter):
    """Connections from a loopback address of our choice: the API sees a distinct client IP."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


class Person:
    def __init__(self, system, tag: str, address: str) -> None:
        self.system = system
        self.email = f"{tag}-{uuid.uuid4().hex[:10]}@example.com"
        self.address = address
        self.agent = f"{tag.capitalize()}Browser/{uuid.uuid4().hex[:8]}"
        self.http = requests.Session()
        self.http.mount("http://", FromAddress(address))
        self.http.headers["User-Agent"] = self.agent

    def post(self, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        return self.call("post", path, token, **kwargs)

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = f"{self.system.auth_url}{path}"
        return self.http.request(method, url, headers=headers, timeout=30, **kwargs)

    def sign_up(self) -> None:
        answer = self.post("/register", json={"email": self.email, "password": PASSWORD})
        assert answer.status_code == 201, answer.text
        self.id = answer.json()["id"]
        login = self.post("/login", json={"email": self.email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        self.token = login.json()["access_token"]

    def needles(self) -> set[str]:
        return {self.email, self.address, self.agent, *getattr(self, "old_emails", [])}


def _code_from_outbox(user_id: str) -> str:
    """The mailed code, as the notifier reads it: the user's last EmailChangeRequested, opened."""
    keys = SqlDataKeys(
        auth_engine(), master_keys(TEST_SETTINGS.data_master_keys, TEST_SETTINGS.data_master_keys_file)
    )
    with auth_engine().connect() as conn:
        payload = conn.execute(
            text(
                "SELECT payload FROM outbox WHERE user_id = :id AND event_type = 'EmailChangeRequested'"
                " ORDER BY id DESC LIMIT 1"
            ),
            {"id": user_id},
        ).scalar_one()
    return parse_event(bytes(payload), keys).data["code"]


def _change_email(person: Person) -> None:
    new_email = f"moved-{uuid.uuid4().hex[:10]}@example.com"
    asked = person.post("/users/me/email", person.token, json={"password": PASSWORD, "new_email": new_email})
    assert asked.status_code == 202, asked.text
    confirmed = person.post(
        "/users/me/email/confirm", person.token, json={"code": _code_from_outbox(person.id)}
    )
    assert confirmed.status_code == 200, confirmed.text
    person.old_emails = [person.email]
    person.email = new_email


# --- the dumps: each store as text, in full ---


def _databases() -> dict[str, str]:
    """Every table of every database of the system, each value as text (bytea decoded)."""
    urls = {
        "auth_db": TEST_SETTINGS.auth_database_url,
        "query_db": TEST_SETTINGS.projection_database_url,
    }
    for name in ("notify_database_url",):  # the notifier's records, where the notifier exists
        if hasattr(TEST_SETTINGS, name):
            urls["notify_db"] = getattr(TEST_SETTINGS, name)
    dumps = {}
    for name, url in urls.items():
        engine = create_engine(url)
        parts = []
        with engine.connect() as conn:
            tables = conn.execute(
                text(
                    "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type ="
                    " 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
                )
            ).all()
            for schema, table in tables:
                for row in conn.execute(text(f'SELECT * FROM "{schema}"."{table}"')):
                    parts.append(f"{schema}.{table}: " + " | ".join(_text(v) for v in row))
        engine.dispose()
        dumps[name] = "\n".join(parts)
    return dumps


def _text(value: Any) -> str:
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _topic() -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": TEST_SETTINGS.kafka_bootstrap,
            "group.id": f"erasure-dump-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
        }
    )
    try:
        topic = TEST_SETTINGS.kafka_topic
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        values: list[bytes] = []
        done = {p for p, end in ends.items() if end == 0}
        while len(done) < len(partitions):
            message = consumer.poll(5)
            assert message is not None, "the topic did not deliver up to its end"
            if message.error():
                continue
            values.append(message.value() or b"")
            if message.offset() + 1 >= ends[message.partition()]:
                done.add(message.partition())
        return values
    finally:
        consumer.close()


def _queues() -> str:
    """Every message waiting in the vhost's queues, read and put back (never acked)."""
    bodies = []
    with Connection(TEST_SETTINGS.broker_url) as connection:
        channel = connection.channel()
        for queue in ("outbox", "projections", "notifications", "celery"):
            try:
                while (message := channel.basic_get(queue, no_ack=False)) is not None:
                    bodies.append(_text(message.body))
            except Exception:  # a queue this deployment does not declare
                channel = connection.channel()
        channel.close()  # unacked messages go back to their queues
    return "\n".join(bodies)


def _logs() -> str:
    texts = []
    for path in Path(DATA_DIR).rglob("*"):
        if path.is_file() and (path.suffix == ".log" or "log" in path.parent.name):
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


def _found(needles: set[str], haystack: str) -> set[str]:
    return {needle for needle in needles if needle in haystack}


def test_a_deleted_account_is_forgotten_by_every_store(system):
    ada = Person(system, "ada", "127.0.0.21")
    bob = Person(system, "bob", "127.0.0.22")
    ada.sign_up()
    bob.sign_up()
    # A taken email is refused by the database's unique index: its error must not log the address.
    assert ada.post("/register", json={"email": ada.email, "password": PASSWORD}).status_code == 409
    _change_email(ada)
    _change_email(bob)
    deleted = ada.call("delete", "/users/me", ada.token, json={"password": PASSWORD})
    assert deleted.status_code == 200, deleted.text
    token = deleted.json()["consistency_token"]
    wait_until(
        lambda: (
            system.query("/users/me", bob.token).status_code == 200
            and system.query("/users/me", ada.token, headers={"X-Consistency-Token": token}).status_code
            == 404
        ),
        timeout=60,
        what="the deletion projected",
    )
    wait_pipeline_idle()
    rebuilt = projector_cli("rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr

    databases = _databases()
    records = _topic()
    queues, logs = _queues(), _logs()
    for name, dump in databases.items():
        assert not _found(ada.needles(), dump), f"{name} still holds the deleted user's data"
    for store, dump in (
        ("the topic", b"\n".join(records).decode("utf-8", "replace")),
        ("queues", queues),
        ("logs", logs),
    ):
        assert not _found(ada.needles() | bob.needles(), dump), f"{store} hold personal data in clear"
    # The read model and the write database keep the living user's data in clear: the dumps see it.
    assert _found(bob.needles(), databases["query_db"]) == bob.needles()
    assert bob.email in databases["auth_db"]
    # The topic holds both users' events forever; only the living one's still open.
    keys = SqlDataKeys(
        auth_engine(), master_keys(TEST_SETTINGS.data_master_keys, TEST_SETTINGS.data_master_keys_file)
    )
    opened = [
        parse_event(value, keys) for value in records if ada.id.encode() in value or bob.id.encode() in value
    ]
    ada_events = [e for e in opened if str(e.user_id) == ada.id]
    bob_events = [e for e in opened if str(e.user_id) == bob.id]
    assert ada_events and all(e.forgotten for e in ada_events if personal_fields(e.type))
    assert not _found(ada.needles(), repr([e.data for e in ada_events]))
    assert _found(bob.needles(), repr([e.data for e in bob_events])) == bob.needles()
    # Gone from the read API too, and the old address is free for a new account.
    assert system.query(f"/users/{ada.id}", bob.token).status_code in (403, 404)
    again = system.register(ada.email)
    assert again["id"] != ada.id
