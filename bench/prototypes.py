"""A prototype of the set-based projection, used only inside benchmark processes.

The benchmark found the projection spending ~85% of its CPU compiling SQL: SQLAlchemy 2.0's
``postgresql.insert`` has ``inherit_cache = False``, so each per-event ``INSERT .. ON
CONFLICT`` was compiled anew (~1 ms each, one or two per event). This prototype folds a batch's
new events per user (counts added, timestamps maxed, roles and registration by version, as
applying them one by one would) and writes the batch with three ``execute_values`` statements:
the claim (processed_events), one upsert of the batch's users in user-id order (one lock order
in every worker: no deadlocks) and one insert of the login-history rows.

The project has since made the same change (commit 5990f6f, ``query_api/effects.py``, with
SQLAlchemy executemany); the prototype stays as a second, independent implementation:
- ``python -m bench.prototypes --check`` applies one random stream (every event type,
  redeliveries, shuffled) with the project's ``apply_batch`` and with this one, and compares
  the read models row by row;
- ``python -m bench.projection_bench --variant current prototype`` measures both.

Nothing is patched at import; ``install_in_worker()`` (called by ``bench.patched_celery``)
switches a benchmark's own worker processes to it.
"""

from __future__ import annotations

import sys
from typing import Any

# --- 1. set-based projection ---------------------------------------------------------------

CLAIM_SQL = (
    "INSERT INTO read_model.processed_events (event_id, event_type, occurred_at) VALUES %s"
    " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)
USERS_SQL = """
INSERT INTO read_model.users AS u (id, email, registered_at, roles, roles_version, login_count,
    last_login_at, failed_login_count, last_failed_login_at, version)
VALUES %s
ON CONFLICT (id) DO UPDATE SET
    email = coalesce(u.email, excluded.email),
    registered_at = coalesce(excluded.registered_at, u.registered_at),
    roles = CASE WHEN excluded.roles_version > u.roles_version THEN excluded.roles ELSE u.roles END,
    roles_version = greatest(u.roles_version, excluded.roles_version),
    login_count = u.login_count + excluded.login_count,
    last_login_at = greatest(u.last_login_at, excluded.last_login_at),
    failed_login_count = u.failed_login_count + excluded.failed_login_count,
    last_failed_login_at = greatest(u.last_failed_login_at, excluded.last_failed_login_at),
    version = greatest(u.version, excluded.version)
"""
USERS_TEMPLATE = "(%s, %s, %s, %s::text[], %s, %s, %s, %s, %s, %s)"
LOGINS_SQL = (
    "INSERT INTO read_model.login_history (event_id, user_id, email, outcome, reason, ip, user_agent,"
    " occurred_at) VALUES %s ON CONFLICT (event_id) DO NOTHING"
)


def _fold(events: list[Any]) -> list[tuple]:
    """One users row per user: the effect of applying its events one by one, in this order."""
    rows: dict[Any, dict[str, Any]] = {}
    for event in events:  # sorted by (user, version, id), as parse_deliveries leaves them
        row = rows.setdefault(
            event.subject,
            {
                "email": None, "registered_at": None, "roles": [], "roles_version": 0, "login_count": 0,
                "last_login_at": None, "failed_login_count": 0, "last_failed_login_at": None, "version": 0,
            },
        )  # fmt: skip
        row["version"] = max(row["version"], event.sequence)
        data = event.data
        if row["email"] is None and data.get("email") is not None:
            row["email"] = data["email"]
        if event.type == "UserRegistered":
            row["registered_at"] = event.time  # the last one applied wins, as in the per-event path
            _roles(row, data["roles"], event.sequence)
        elif event.type in ("UserRoleGranted", "UserRoleRevoked"):
            _roles(row, data["roles"], event.sequence)
        elif event.type == "UserLoggedIn":
            row["login_count"] += 1
            row["last_login_at"] = _latest(row["last_login_at"], event.time)
        elif event.type == "UserLoginFailed":
            row["failed_login_count"] += 1
            row["last_failed_login_at"] = _latest(row["last_failed_login_at"], event.time)
    return [
        (
            str(user),
            r["email"],
            r["registered_at"],
            r["roles"],
            r["roles_version"],
            r["login_count"],
            r["last_login_at"],
            r["failed_login_count"],
            r["last_failed_login_at"],
            r["version"],
        )  # fmt: skip
        for user, r in sorted(rows.items(), key=lambda item: str(item[0]))
    ]


def _roles(row: dict[str, Any], roles: list[str], version: int) -> None:
    if version > row["roles_version"]:  # strictly newer wins, as in the guarded upsert
        row["roles"] = list(roles)
        row["roles_version"] = version


def _latest(current: Any, candidate: Any) -> Any:
    return candidate if current is None or candidate > current else current


def apply_batch(conn: Any, deliveries: list[Any]) -> Any:
    """Drop-in for ``query_api.projections.apply_batch`` (same report, same read model)."""
    from psycopg2.extras import execute_values
    from query_api.projections import BatchReport, parse_deliveries, record_dead_letter

    good, poison = parse_deliveries(deliveries)
    report = BatchReport()
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        new_ids: set[str] = set()
        if good:
            claims = sorted(
                {str(e.id): (str(e.id), e.type, e.time) for _, e in good}.values(), key=lambda r: r[0]
            )
            new_ids = {
                str(r[0]) for r in execute_values(cursor, CLAIM_SQL, claims, page_size=10000, fetch=True)
            }
        fresh = []
        for _, event in good:
            key = str(event.id)
            if key in new_ids:
                new_ids.discard(key)  # a duplicate inside the batch applies once
                fresh.append(event)
                report.applied += 1
                report.applied_events.append(event)
            else:
                report.duplicates += 1
        if fresh:
            execute_values(cursor, USERS_SQL, _fold(fresh), template=USERS_TEMPLATE, page_size=10000)
            logins = sorted(
                (
                    str(e.id),
                    str(e.subject),
                    e.data["email"],
                    "success" if e.type == "UserLoggedIn" else "failure",
                    e.data.get("reason"),
                    e.data.get("ip"),
                    e.data.get("user_agent"),
                    e.time,
                )  # fmt: skip
                for e in fresh
                if e.type in ("UserLoggedIn", "UserLoginFailed")
            )
            if logins:
                execute_values(cursor, LOGINS_SQL, logins, page_size=10000)
    finally:
        cursor.close()
    for delivery, error in poison:
        record_dead_letter(conn, delivery, error)
        report.dead_lettered += 1
    return report


def install_in_worker() -> None:
    """Switch this process's projection task to the prototype."""
    import query_api.projections
    import query_api.tasks

    # The task calls apply_batch directly or through a helper of projections.py (looked up
    # at call time): replace it in both modules.
    for module in (query_api.projections, query_api.tasks):
        if hasattr(module, "apply_batch"):
            module.apply_batch = apply_batch  # type: ignore[attr-defined]


# --- the check: prototype and current leave the same read model ---------------------------


def check(events_count: int = 3000, batch: int = 100, seed: int = 7) -> bool:
    """Apply one random stream (all types, duplicates, shuffled) both ways; compare tables."""
    import random
    import uuid
    from datetime import UTC, datetime, timedelta

    from query_api.projections import Delivery
    from query_api.projections import apply_batch as current
    from sqlalchemy import text

    from bench import resources
    from event_contract import new_event, serialize_event

    rnd = random.Random(seed)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    events = []
    users = [uuid.uuid4() for _ in range(events_count // 8)]
    versions = dict.fromkeys(users, 0)
    while len(events) < events_count:
        user = rnd.choice(users)
        versions[user] += 1
        version = versions[user]
        when = base + timedelta(seconds=rnd.randint(0, 10**6))
        email = f"{user.hex[:8]}@example.com"
        kind = (
            "UserRegistered"
            if version == 1
            else rnd.choice(
                ["UserLoggedIn", "UserLoggedIn", "UserLoginFailed", "UserRoleGranted", "UserRoleRevoked"]
            )
        )
        if kind == "UserRegistered":
            data = {"email": email, "roles": ["user"]}
        elif kind.startswith("UserRole"):
            data = {
                "role": "admin",
                "roles": sorted(rnd.sample(["user", "admin", "auditor"], rnd.randint(1, 3))),
            }
        else:
            data = {"email": email, "ip": "10.0.0.1", "user_agent": "ua"}
            if kind == "UserLoginFailed":
                data["reason"] = "invalid_password"
        events.append(new_event(kind, user, version, data, time=when))
    # Redeliveries and disorder: some events twice, the whole stream shuffled.
    stream = events + rnd.sample(events, len(events) // 5)
    rnd.shuffle(stream)
    deliveries = [Delivery.from_bytes(serialize_event(e), f"t/0/{i}") for i, e in enumerate(stream)]
    engine = resources.query_engine()
    snapshots = []
    for apply in (current, apply_batch):
        resources.reset_query()
        for i in range(0, len(deliveries), batch):
            with engine.begin() as conn:
                apply(conn, deliveries[i : i + batch])
        with engine.connect() as conn:
            snapshots.append(
                [
                    conn.execute(text(f"SELECT * FROM read_model.{table} ORDER BY 1")).all()
                    for table in ("users", "login_history")
                ]
                + [
                    conn.execute(
                        text(
                            "SELECT event_id, event_type, occurred_at FROM read_model.processed_events"
                            " ORDER BY 1"
                        )
                    ).all()
                ]
            )
    resources.reset_query()
    same = snapshots[0] == snapshots[1]
    print(
        f"set-based projection vs current: {len(deliveries)} deliveries ({len(events)} events, "
        f"{len(deliveries) - len(events)} redelivered), batches of {batch}: "
        + ("identical read model" if same else "DIFFERENT read models")
    )
    return same


if __name__ == "__main__":
    if "--check" in sys.argv:
        from bench.environment import apply as apply_environment

        apply_environment()
        from bench import resources as _resources

        _resources.prepare_databases()
        sys.exit(0 if check() else 1)
