"""Read-your-writes: ``X-Consistency-Token: <token from the write API>``.

The token is signed by the write API and names the caller's user, the event and the user's
version after it (``web.consistency_token``). The read API refuses at once a token that is
invalid, expired or someone else's, and otherwise answers once the user's events up to that
version are all projected: projection workers apply batches in parallel, so "the event is
applied" alone could show a login before the registration it follows.

Waits are bounded: in time (``CONSISTENCY_WAIT_SECONDS``), per caller (one at a time across
every read API process: a PostgreSQL advisory lock per user, held while waiting) and in
total (``CONSISTENCY_MAX_WAITS`` per process, below its thread count, so waiting requests
never take every thread from the others); past a bound the answer is 503 with Retry-After
at once. A waiter sleeps until the projection's NOTIFY (``LISTEN
read_model_applied`` on one connection per process) or a short fallback tick, then checks.

On a streaming replica (``PG_REPLICA_PORT``, a hot standby): every check runs on the server
the request then reads, so "caught up" means the events are replayed *there*; a replica that
lags makes the caller wait (bounded), never read stale. A standby runs no LISTEN and gets
the primary's NOTIFY never, so waiters there poll every ``STANDBY_TICK`` (the waits are
bounded per process, so is the polling). The per-caller wait lock is then the replica's
own (advisory locks are local to a server): one wait per caller per replica. A stopped
replica is a database error: 503 with Retry-After, as for any unreachable database.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import uuid
from collections import Counter

from flask import current_app, request
from sqlalchemy import Engine, text

from query_api.access import caller_id
from query_api.extensions import db
from web.consistency_token import ConsistencyClaim, InvalidConsistencyToken, verify_consistency_token
from web.problems import Problem

HEADER = "X-Consistency-Token"
CHANNEL = "read_model_applied"
FALLBACK_TICK = 0.25  # a missed notification costs at most this much
STANDBY_TICK = 0.05  # a standby hears no NOTIFY: waiters there poll this often
STANDBY_RECHECK = 30.0  # a standby may be promoted: ask again this often
ALREADY_WAITING = "You are already waiting for a write; retry shortly."
log = logging.getLogger(__name__)

# Advisory locks of the two-key form, first key "consistency waits" (a space of its own).
_WAIT_LOCK_SPACE = 0x52595721  # "RYW!"
_TRY_WAIT_LOCK = text(f"SELECT pg_try_advisory_lock({_WAIT_LOCK_SPACE}, :user)")
_WAIT_UNLOCK = text(f"SELECT pg_advisory_unlock({_WAIT_LOCK_SPACE}, :user)")
_CAUGHT_UP = text(
    "SELECT count(DISTINCT sequence) >= :sequence FROM read_model.processed_events"
    " WHERE user_id = :user_id AND sequence <= :sequence"
)


class ProjectionSignal:
    """Wakes waiting requests when the projection commits a batch (one per process)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._changed = threading.Condition()
        self._generation = 0
        self._slots = threading.Lock()
        self._waiting: Counter[uuid.UUID] = Counter()
        self.tick = FALLBACK_TICK
        self._thread = threading.Thread(target=self._listen, name="projection-listener", daemon=True)
        self._thread.start()

    def try_enter(self, caller: uuid.UUID, limit: int) -> str | None:
        """Take a waiting slot for ``caller``; or say why not (a bound is reached)."""
        with self._slots:
            if self._waiting[caller]:
                return ALREADY_WAITING
            if sum(self._waiting.values()) >= limit:
                return "Too many reads are waiting for their writes; retry shortly."
            self._waiting[caller] += 1
            return None

    def leave(self, caller: uuid.UUID) -> None:
        with self._slots:
            self._waiting[caller] -= 1
            if not self._waiting[caller]:
                del self._waiting[caller]

    def wait(self, seen: int, timeout: float) -> int:
        """Wait until a batch lands after generation ``seen`` (or ``timeout``); return the generation."""
        with self._changed:
            self._changed.wait_for(lambda: self._generation != seen, timeout)
            return self._generation

    @property
    def generation(self) -> int:
        return self._generation

    def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                if self._standby():
                    # LISTEN fails during recovery, and NOTIFY never reaches a standby.
                    self.tick = STANDBY_TICK
                    time.sleep(STANDBY_RECHECK)
                    continue
                self.tick = FALLBACK_TICK
                connection = self._engine.raw_connection()
                try:
                    raw = connection.driver_connection
                    raw.autocommit = True
                    with raw.cursor() as cursor:
                        cursor.execute(f"LISTEN {CHANNEL}")
                    delay = 0.5
                    while True:
                        if select.select([raw], [], [], 5.0)[0]:
                            raw.poll()
                            if raw.notifies:
                                raw.notifies.clear()
                                with self._changed:
                                    self._generation += 1
                                    self._changed.notify_all()
                finally:
                    connection.invalidate()  # a LISTENing connection never goes back to the pool
            except Exception as exc:  # the database away: waiters fall back to the tick
                log.warning("consistency: listener reconnecting in %.1f s: %s", delay, exc.__class__.__name__)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _standby(self) -> bool:
        with self._engine.connect() as conn:
            return bool(conn.execute(text("SELECT pg_is_in_recovery()")).scalar())


_signals: dict[int, ProjectionSignal] = {}
_signals_lock = threading.Lock()


def _signal() -> ProjectionSignal:
    # One listener per process, started in the process that serves (gunicorn forks workers).
    pid = os.getpid()
    with _signals_lock:
        if pid not in _signals:
            _signals[pid] = ProjectionSignal(db.engine)
        return _signals[pid]


def read_your_writes() -> None:
    """Return once the caller's write named by the header is visible; call after authorization."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return
    try:
        claim = verify_consistency_token(current_app.config["JWT_PUBLIC_KEY"], raw.strip())
    except InvalidConsistencyToken as exc:
        raise Problem(
            422, "Unprocessable Content", f"{HEADER} must be a consistency token from the write API."
        ) from exc
    caller = caller_id()
    if claim.user_id != caller:
        raise Problem(403, "Forbidden", f"This {HEADER} belongs to another user.")
    if _caught_up(claim):
        return
    signal = _signal()
    refused = signal.try_enter(caller, int(current_app.config["CONSISTENCY_MAX_WAITS"]))
    if refused:
        raise _not_yet(refused)
    try:
        with db.engine.connect() as lock_conn:
            if not lock_conn.execute(_TRY_WAIT_LOCK, {"user": _lock_key(caller)}).scalar():
                raise _not_yet(ALREADY_WAITING)
            try:
                if _wait(signal, claim):
                    return
            finally:
                lock_conn.execute(_WAIT_UNLOCK, {"user": _lock_key(caller)})
                lock_conn.commit()
    finally:
        signal.leave(caller)
    raise _not_yet("Your write is not in the read model yet; retry shortly.")


def _wait(signal: ProjectionSignal, claim: ConsistencyClaim) -> bool:
    deadline = time.monotonic() + float(current_app.config["CONSISTENCY_WAIT_SECONDS"])
    seen = signal.generation
    while (left := deadline - time.monotonic()) > 0:
        seen = signal.wait(seen, min(left, signal.tick))
        if _caught_up(claim):
            return True
    return False


def _lock_key(user: uuid.UUID) -> int:
    # The lock's second key (a signed 32-bit integer): the user id folded; a rare collision
    # only makes one of two users retry.
    return int.from_bytes(user.bytes[:4], "big", signed=True)


def _caught_up(claim: ConsistencyClaim) -> bool:
    try:
        return bool(
            db.session.execute(_CAUGHT_UP, {"user_id": claim.user_id, "sequence": claim.sequence}).scalar()
        )
    finally:
        db.session.rollback()  # a fresh snapshot next time, and the connection back to the pool


def _not_yet(detail: str) -> Problem:
    return Problem(503, "Service Unavailable", detail, headers={"Retry-After": "1"})
