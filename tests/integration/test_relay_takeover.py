"""A relay frozen while it holds the lock mid-batch loses it within a bound; another takes over.

Two relay worker processes; the one holding the advisory lock while it waits for Kafka (its
rows selected, not yet marked) is frozen with SIGSTOP while commands keep coming over HTTP.
PostgreSQL ends its idle transaction after RELAY_LOCK_TIMEOUT_SECONDS, the other relay
publishes, and when the frozen one is resumed its UPDATE fails on a dead session. Every
command's event is projected exactly once in effect, and Kafka holds each user's events in
one partition, in version order (late duplicates from the frozen relay are allowed).
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
import uuid
from collections import defaultdict

import pytest
import requests
from sqlalchemy import Engine, create_engine

from outbox_relay.relay import RELAY_LOCK_KEY
from tests.support.environment import TEST_SETTINGS
from tests.support.faults import ensure_healthy, log_size, wait_for_log
from tests.support.kafka_tools import read_all
from tests.support.pipeline import Burst, assert_projected_exactly_once, record_document
from tests.support.read_model import auth_engine, rows, scalar
from tests.support.system import PASSWORD
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

LOCK_TIMEOUT = 8  # seconds; the test environment's Kafka wait is 5 + 2 s
RELAYS = ("relay_a", "relay_b")


@functools.cache
def _relay_engine() -> Engine:
    # As the relay's own role: PostgreSQL shows a session's state and query only to its role
    # (or a superuser), and each process kind has a role of its own.
    return create_engine(TEST_SETTINGS.relay_database_url, pool_pre_ping=True)


def _lock_holder() -> dict | None:
    """The session holding the relay's advisory lock: backend pid, application name, state, query."""
    found = rows(
        "SELECT a.pid, a.application_name AS app, a.state, a.query FROM pg_locks l"
        " JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.database = a.datid"
        " AND l.classid::bigint = :high AND l.objid::bigint = :low AND l.objsubid = 1"
        " AND a.datname = current_database()",
        engine=_relay_engine(),
        high=RELAY_LOCK_KEY >> 32,
        low=RELAY_LOCK_KEY & 0xFFFFFFFF,
    )
    return found[0] if found else None


def _waiting_on_kafka(holder: dict | None) -> bool:
    # Rows selected, nothing marked yet: the transaction sits idle while the producer flushes.
    return bool(
        holder
        and holder["app"].startswith("outbox-relay:")
        and holder["state"] == "idle in transaction"
        and holder["query"].lstrip().startswith("SELECT id, user_id, payload")
    )


class _Commands(threading.Thread):
    """Registers a user and logs it in, again and again over HTTP, until stopped."""

    def __init__(self, system) -> None:
        super().__init__(daemon=True)
        self.system, self.burst, self.lock = system, Burst(), threading.Lock()
        self.stop, self.error = threading.Event(), None

    def run(self) -> None:
        http = requests.Session()
        try:
            while not self.stop.is_set():
                email = f"takeover-{uuid.uuid4().hex[:12]}@example.com"
                body = {"email": email, "password": PASSWORD}
                registered = http.post(f"{self.system.auth_url}/register", json=body, timeout=30)
                assert registered.status_code == 201, registered.text
                login = http.post(f"{self.system.auth_url}/login", json=body, timeout=30)
                assert login.status_code == 200, login.text
                with self.lock:
                    self.burst.add_user(registered.json()["id"], registered.json()["event_id"])
                    self.burst.add_login(registered.json()["id"], login.json()["event_id"])
        except BaseException as exc:
            self.error = exc

    def commands(self) -> int:
        with self.lock:
            return len(self.burst.event_ids)


def _freeze_the_lock_holder(system, within: float = 90.0) -> tuple[str, dict]:
    """SIGSTOP the relay worker (whole process group) whose pool process holds the lock mid-batch.

    The window (rows selected, Kafka not yet answered) lasts milliseconds; on a loaded machine
    many tries miss it, so the bound is a time (commands keep coming meanwhile), not a count."""
    groups = {os.getpgid(system.processes.pid(name)): name for name in RELAYS}
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        holder = _lock_holder()
        if not _waiting_on_kafka(holder):
            time.sleep(0.002)  # a tight poll for a window of a few milliseconds
            continue
        pool_pid = int(holder["app"].split(":", 1)[1])
        name = groups.get(os.getpgid(pool_pid))
        if name is None:
            continue
        os.killpg(system.processes.pid(name), signal.SIGSTOP)
        frozen = _lock_holder()
        if frozen and frozen["pid"] == holder["pid"] and _waiting_on_kafka(frozen):
            return name, frozen
        os.killpg(system.processes.pid(name), signal.SIGCONT)  # it had moved on: try again
    raise AssertionError("never caught a relay holding the lock while it waited for Kafka")


def test_a_frozen_relay_loses_the_lock_and_another_takes_over(system, settings):
    frozen_name = None
    commands = _Commands(system)
    try:
        system.processes.stop("relay_worker")
        for name in RELAYS:
            system.processes.start(
                "relay_worker",
                # A producer that lingers 300 ms holds each batch's lock that long while it
                # waits for Kafka: a window wide enough to freeze the holder in, however fast
                # the machine (with the default 5 ms the hunt can miss for a minute).
                {"RELAY_LOCK_TIMEOUT_SECONDS": str(LOCK_TIMEOUT), "RELAY_LINGER_MS": "300"},
                as_name=name,
            )
        for name in RELAYS:
            wait_for_log(system, name, "ready.", timeout=60)
        commands.start()
        wait_until(lambda: commands.commands() >= 20, timeout=60, what="commands flowing")

        frozen_name, frozen = _freeze_the_lock_holder(system)
        frozen_at = time.monotonic()
        marks = {name: log_size(system, name) for name in RELAYS}
        last_id = scalar("SELECT max(id) FROM outbox", engine=auth_engine())
        unmarked = scalar(
            "SELECT count(*) FROM outbox WHERE id <= :last AND published_at IS NULL",
            engine=auth_engine(),
            last=last_id,
        )
        assert unmarked > 0, "the frozen relay's batch was already marked"

        def taken_over() -> bool:
            return not scalar(
                "SELECT count(*) FROM outbox WHERE id <= :last AND published_at IS NULL",
                engine=auth_engine(),
                last=last_id,
            )

        wait_until(taken_over, timeout=LOCK_TIMEOUT + 30, interval=0.05, what="another relay taking over")
        takeover = time.monotonic() - frozen_at
        # The frozen relay's session is gone (ended by PostgreSQL), not merely overtaken.
        gone = scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid", engine=auth_engine(), pid=frozen["pid"]
        )
        assert gone == 0, "the frozen relay still has its session"
        assert takeover < LOCK_TIMEOUT + 5, f"takeover took {takeover:.1f} s"
        other = next(name for name in RELAYS if name != frozen_name)
        assert "relay: published" in system.processes.log_text(other)[marks[other] :]

        # More commands while it stays frozen, then it wakes up with a dead session.
        at_takeover = commands.commands()
        wait_until(lambda: commands.commands() >= at_takeover + 40, timeout=60, what="more commands")
        os.killpg(system.processes.pid(frozen_name), signal.SIGCONT)
        wait_for_log(system, frozen_name, "relay: auth_db unavailable", after=marks[frozen_name], timeout=60)
        frozen_name = None
        wait_until(lambda: commands.commands() >= at_takeover + 80, timeout=60, what="commands after wake-up")
        commands.stop.set()
        commands.join(60)
        assert commands.error is None, commands.error

        burst = commands.burst
        counts = assert_projected_exactly_once(burst, timeout=120)
        assert counts["users"] == len(burst.users) and counts["login_count"] == len(burst.users)
        duplicates = _assert_per_user_order_in_kafka(settings, burst)
        print(
            f"relay takeover: {takeover:.2f} s with RELAY_LOCK_TIMEOUT_SECONDS={LOCK_TIMEOUT}"
            f" ({unmarked} rows unmarked at the freeze, {len(burst.event_ids)} events,"
            f" {duplicates} duplicate records in Kafka)"
        )
    finally:
        commands.stop.set()
        if frozen_name is not None:
            os.killpg(system.processes.pid(frozen_name), signal.SIGCONT)
        for name in RELAYS:
            system.processes.stop(name)
        ensure_healthy(system)


def _assert_per_user_order_in_kafka(settings, burst: Burst) -> int:
    """Each user's events in one partition, first copies in version order; the duplicate count."""
    wanted = {str(e) for e in burst.event_ids}
    by_user: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for record in sorted(
        read_all(settings.kafka_bootstrap, settings.kafka_topic), key=lambda r: (r.partition, r.offset)
    ):
        document = record_document(record.value)
        if document and document["id"] in wanted:
            by_user[document["subject"]].append((record.partition, document["sequence"], document["id"]))
    assert set(by_user) == {str(u) for u in burst.users}
    duplicates = 0
    for records in by_user.values():
        assert len({p for p, _, _ in records}) == 1, "one user's events span partitions"
        first: list[int] = []
        seen: set[str] = set()
        for _, sequence, event_id in records:
            if event_id in seen:
                duplicates += 1
                continue
            seen.add(event_id)
            first.append(sequence)
        assert first == [1, 2], first
    return duplicates
