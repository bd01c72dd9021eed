"""Rebuilding the read model from the topic while the query API keeps serving."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import create_engine, text

from event_contract import Delivery, new_event, serialize_event
from projector.projection import rebuild
from projector.projection.apply import apply_batch, claim_new
from projector.projection.folds import apply_events
from tests.support.cli import projector_cli
from tests.support.databases import scratch_database
from tests.support.pipeline import (
    Burst,
    assert_projected_exactly_once,
    produce,
    produce_raw,
    producer,
    read_model_snapshot,
    topic_events,
    user_histories,
    wait_pipeline_idle,
)
from tests.support.read_model import query_engine, rows, scalar
from tests.support.waiting import wait_until


def _count(engine, schema: str, table: str, column: str, value) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text(f"SELECT count(*) FROM {schema}.{table} WHERE {column} = :v"), {"v": value}
        ).scalar()


def _waiting_on_locks(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar()


def test_the_swap_waits_for_a_projection_transaction_that_spans_it(settings):
    """A worker transaction open across the swap keeps all its writes in one schema, and a
    transaction that queues behind the swap writes to the new schema: the catch-up then
    applies each event exactly once (no login counted twice)."""
    from query_api import create_app
    from web.app_setup import ENGINE_OPTIONS

    def owner_app(config: dict) -> object:
        # Migrated as the owner, in transactions (the read API's own engine runs in autocommit).
        return create_app(settings, {**config, "SQLALCHEMY_ENGINE_OPTIONS": ENGINE_OPTIONS})

    with scratch_database(settings.projection_database_url, owner_app, "swap") as app:
        engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
        try:
            rebuild._create_next_schema(engine)
            user = uuid.uuid4()
            spanning = new_event("UserLoggedIn", user, 2, {"email": "span@example.com"})
            queued = new_event("UserLoginFailed", user, 3, {"email": "span@example.com", "reason": "x"})
            swapped = threading.Event()
            swapper = threading.Thread(target=lambda: (rebuild._swap(engine), swapped.set()))
            late = threading.Thread(
                target=lambda: _apply_in_new_transaction(engine, [_delivery(queued)]), daemon=True
            )
            with engine.connect() as worker:
                transaction = worker.begin()
                assert claim_new(worker, [spanning])  # the dedupe record, in the live schema
                swapper.start()
                wait_until(
                    lambda: swapped.is_set() or _waiting_on_locks(engine) >= 1,
                    timeout=10,
                    what="the swap blocked (or done)",
                )
                late.start()
                wait_until(
                    lambda: swapped.is_set() or _waiting_on_locks(engine) >= 2,
                    timeout=10,
                    what="a second projection queued behind the swap",
                )
                apply_events(worker, [spanning])  # the effect, same transaction
                transaction.commit()
            swapper.join(30)
            late.join(30)
            assert swapped.is_set() and not late.is_alive()

            live, old = "read_model", "read_model_old"
            # The spanning transaction wrote only to the old tables...
            assert _count(engine, old, "processed_events", "event_id", spanning.id) == 1
            assert _count(engine, live, "users", "id", user) == 1  # (created by the queued one)
            assert _count(engine, live, "processed_events", "event_id", spanning.id) == 0
            # ...and the queued one only to the new tables.
            assert _count(engine, live, "processed_events", "event_id", queued.id) == 1
            assert _count(engine, old, "processed_events", "event_id", queued.id) == 0

            # The catch-up applies both into the new schema: each counted once.
            _apply_in_new_transaction(engine, [_delivery(spanning), _delivery(queued)])
            with engine.connect() as conn:
                counts = conn.execute(
                    text("SELECT login_count, failed_login_count FROM read_model.users WHERE id = :id"),
                    {"id": user},
                ).one()
            assert tuple(counts) == (1, 1)

            # The rebuilt tables carry the migrations' index names (ix_users_email, ...).
            assert _index_names(engine, live) == _index_names(engine, old)
            assert ("users", "ix_users_email") in _index_names(engine, live)
        finally:
            engine.dispose()


def _index_names(engine, schema: str) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                text("SELECT tablename, indexname FROM pg_indexes WHERE schemaname = :s"), {"s": schema}
            ).all()
        )


def _delivery(event) -> Delivery:
    return Delivery.from_bytes(serialize_event(event), "test/swap")


def _apply_in_new_transaction(engine, deliveries) -> None:
    with engine.begin() as conn:
        apply_batch(conn, deliveries)


class _Poller(threading.Thread):
    """GET one user from the query API again and again; every answer's status is kept."""

    def __init__(self, system, user_id: str, token: str) -> None:
        super().__init__(daemon=True)
        self.system, self.user_id, self.token = system, user_id, token
        self.statuses: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        import requests

        http = requests.Session()
        while not self.stop.is_set():
            response = http.get(
                f"{self.system.query_url}/users/{self.user_id}",
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=30,
            )
            self.statuses.append(response.status_code)


class _Trickle(threading.Thread):
    """Produces a user's worth of events every few milliseconds until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.burst = Burst()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            out = producer()
            while not self.stop.is_set():
                part = user_histories(2, logins=1, failures=1, tag="during-rebuild")
                produce(part.events, out=out)
                self.burst.events.extend(part.events)
                self.burst.event_ids.extend(part.event_ids)
                self.burst.users.update(part.users)
                time.sleep(0.02)  # pacing the producer, not waiting for a result
        except BaseException as exc:
            self.error = exc


@pytest.mark.slow
def test_rebuild_while_the_query_api_serves_and_events_keep_coming(system, settings):
    # Something to rebuild, and an event that passes the contract but breaks the database.
    burst = user_histories(150, logins=2, failures=1, tag="rebuild", lifecycle=True)  # every event type
    produce(burst.events)
    breaking = new_event("UserRegistered", uuid.uuid4(), 1, {"email": "too-big@example.com"})
    document = breaking.to_cloudevent() | {"sequence": 2**31}
    import json

    produce_raw([(str(breaking.user_id).encode(), json.dumps(document).encode())])
    reader = system.register()
    login = system.login(reader["email"])
    assert login.status_code == 200
    assert_projected_exactly_once(burst)
    wait_until(
        lambda: system.query(f"/users/{reader['id']}", token=login.json()["token"]).status_code == 200,
        timeout=30,
        what="the reader projected",
    )

    # The read model as derived from the topic (tests that apply events straight to the
    # database leave rows no topic holds: a rebuild drops those, on purpose).
    wait_pipeline_idle()
    events = topic_events()
    users = {doc["subject"] for doc in events.values() if "subject" in doc}
    before = read_model_snapshot(user_ids=users, event_ids=events)
    assert len(before["users"]) >= 151 and len(before["processed_events"]) >= len(burst.event_ids)
    canary = uuid.uuid4()  # a row no event made: gone once the rebuilt tables are swapped in
    with query_engine().begin() as conn:
        conn.execute(text("INSERT INTO read_model.users (id, email) VALUES (:id, 'canary')"), {"id": canary})
    dead_before = scalar("SELECT count(*) FROM dead_letters")
    indexes_before = _index_names(query_engine(), "read_model")

    poller = _Poller(system, reader["id"], login.json()["token"])
    trickle = _Trickle()
    poller.start()
    trickle.start()
    wait_until(lambda: trickle.burst.event_ids and poller.statuses, timeout=30, what="traffic flowing")
    produced_before = len(trickle.burst.event_ids)
    started = time.monotonic()
    try:
        result = projector_cli("rebuild", "--batch-size", "200", timeout=300)
        took = time.monotonic() - started
        produced_during = len(trickle.burst.event_ids) - produced_before
    finally:
        trickle.stop.set()
        poller.stop.set()
        trickle.join(30)
        poller.join(60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rebuilt from" in result.stdout, result.stdout
    assert trickle.error is None, trickle.error
    assert produced_during > 0, "no event was produced while the rebuild ran"
    assert poller.statuses and set(poller.statuses) == {200}, sorted(set(poller.statuses))

    # Events produced during the rebuild are all there, each once.
    assert_projected_exactly_once(trickle.burst)
    assert rows("SELECT id FROM read_model.users WHERE id = :id", id=canary) == []
    after = read_model_snapshot(user_ids=users, event_ids=events)
    assert after == before
    assert scalar("SELECT count(*) FROM dead_letters") == dead_before
    assert scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'read_model_%'") == 0
    assert _index_names(query_engine(), "read_model") == indexes_before
    print(
        f"rebuild: {result.stdout.strip()} ({took:.1f} s; {produced_during} events produced meanwhile, "
        f"{len(poller.statuses)} reads, all 200)"
    )
