"""HTTP endpoints of the read API: users, their sessions, logins and timeline, from query_db only.

Every data endpoint needs an access token signed by auth_api. A request may name the
event it must see with ``X-Consistency-Token`` (read-your-writes).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from psycopg2.extras import NamedTupleCursor
from sqlalchemy import Row, bindparam, select, tuple_
from sqlalchemy.dialects.postgresql.psycopg2 import dialect as psycopg2_dialect
from sqlalchemy.exc import DBAPIError

from query_api.access import authenticate, caller_id, require_admin, require_self_or_admin
from query_api.consistency import HEADER as CONSISTENCY_HEADER
from query_api.consistency import read_your_writes
from query_api.extensions import db
from query_api.paging import MAX_LIMIT, decode_cursor, encode_cursor, next_link, read_limit
from query_api.schemas import ExportOut, HealthOut, HistoryEntryOut, LoginOut, SessionOut, UserOut
from read_model import LoginHistoryEntry, SessionView, TimelineEntry, UserView
from read_model.timeline import AccountState, account_from_timeline
from web.openapi import ApiDocument
from web.problems import Problem

log = logging.getLogger(__name__)
bp = Blueprint("query", __name__)
api = ApiDocument(
    "query_api",
    "1.0.0",
    "Read side of the CQRS user service: projected users, sessions, login history and each"
    " account's timeline. Send "
    f"{CONSISTENCY_HEADER}: <consistency_token of your write> to be answered only once it is visible.",
)

PAGING = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]
CONSISTENCY = [
    {
        "name": CONSISTENCY_HEADER,
        "in": "header",
        "schema": {"type": "string"},
        "description": "consistency_token of your own write (from the write API)",
    }
]
LINK = {200: {"Link": {"schema": {"type": "string"}, "description": 'RFC 8288, rel="next"'}}}
READ_ERRORS = {401: None, 403: None, 422: None, 503: None}
# OpenAPI links from a user to its reads (schemathesis' stateful phase follows them).
ONE_USER_LINKS = {
    200: {
        "GetUser": {"operationId": "get_users_user_id", "parameters": {"user_id": "$response.body#/id"}},
        "GetLogins": {
            "operationId": "get_users_user_id_logins",
            "parameters": {"user_id": "$response.body#/id"},
        },
        "GetHistory": {
            "operationId": "get_users_user_id_history",
            "parameters": {"user_id": "$response.body#/id"},
        },
    }
}
AS_OF = {
    "name": "as_of",
    "in": "query",
    "schema": {"type": "string", "format": "date-time"},
    "description": "An RFC 3339 time with an offset (2026-03-01T09:00:00Z; encode + as %2B): the user"
    " as it was then, folded from its timeline (404 before its registration).",
}
# RFC 3339's date-time (section 5.6): a full date, "T", a full time with an offset.
RFC3339 = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)", re.ASCII
)


def data_endpoint(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """A valid access token first; the view checks who may read what, then calls
    ``read_your_writes()`` before it reads, so no caller waits for what it may not see."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        authenticate()
        try:
            return view(*args, **kwargs)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            # The server dropped the pooled connection (a restart, a terminated backend); the
            # pool has let go of all it held. A read changes nothing: run it once more.
            log.info("read retried on a fresh connection: %s", type(exc.orig).__name__)
            db.session.rollback()
            return view(*args, **kwargs)

    return guarded


@api.route(bp, "get", "/health", "Liveness", responses={200: HealthOut})
def health() -> ResponseReturnValue:
    return jsonify(status="OK")


@api.route(
    bp,
    "get",
    "/users",
    "All users (admin only), keyset-paginated, filter by email",
    responses={200: [UserOut], 403: None, **READ_ERRORS},
    secured=True,
    headers=LINK,
    parameters=[*PAGING, {"name": "email", "in": "query", "schema": {"type": "string"}}, *CONSISTENCY],
    links={
        200: {
            "GetFirstUser": {
                "operationId": "get_users_user_id",
                "parameters": {"user_id": "$response.body#/0/id"},
            },
            "GetFirstUserLogins": {
                "operationId": "get_users_user_id_logins",
                "parameters": {"user_id": "$response.body#/0/id"},
            },
        }
    },
)
@data_endpoint
def list_users() -> ResponseReturnValue:
    require_admin()
    read_your_writes()
    limit = read_limit()
    query = select(UserView).where(UserView.registered_at.is_not(None))
    email = request.args.get("email")
    if email is not None:
        if "\x00" in email or len(email) > 320:
            raise Problem(422, "Unprocessable Content", "Invalid email filter.")
        query = query.where(UserView.email == email.strip().lower())
    cursor = request.args.get("cursor")
    if cursor:
        (after,) = decode_cursor(cursor, 1)
        query = query.where(UserView.id > _uuid(after, "cursor"))
    users = db.session.execute(query.order_by(UserView.id).limit(limit + 1)).scalars().all()
    next_cursor = encode_cursor(str(users[limit - 1].id)) if len(users) > limit else None
    return _paged([user_json(u) for u in users[:limit]], next_cursor)


@api.route(
    bp,
    "get",
    "/users/me",
    "The caller's own user (now, or as it was at as_of)",
    responses={200: UserOut, 404: None, **READ_ERRORS},
    secured=True,
    parameters=[AS_OF, *CONSISTENCY],
    links=ONE_USER_LINKS,
)
@data_endpoint
def get_me() -> ResponseReturnValue:
    return _one_user(caller_id())


@api.route(
    bp,
    "get",
    "/users/<user_id>",
    "One user, now or as it was at as_of (the user itself or an admin)",
    responses={200: UserOut, 403: None, 404: None, **READ_ERRORS},
    secured=True,
    parameters=[AS_OF, *CONSISTENCY],
    links=ONE_USER_LINKS,
)
@data_endpoint
def get_user(user_id: str) -> ResponseReturnValue:
    wanted = _uuid(user_id, "user id")
    require_self_or_admin(wanted)
    return _one_user(wanted)


def _one_user(user_id: uuid.UUID) -> ResponseReturnValue:
    as_of = _as_of()  # refused before any wait
    read_your_writes()
    if as_of is None:
        return _user_response(_find_user(user_id))
    entries = db.session.execute(
        select(TimelineEntry).where(TimelineEntry.user_id == user_id, TimelineEntry.occurred_at <= as_of)
    ).scalars()
    account = account_from_timeline(user_id, entries)
    if account is None:
        raise Problem(404, "Not Found", "No such user at that time.")
    return _user_response(account)


def _as_of() -> datetime | None:
    raw = request.args.get("as_of")
    if raw is None:
        return None
    try:
        if not RFC3339.fullmatch(raw.upper()):
            raise ValueError(raw)
        moment = datetime.fromisoformat(raw.upper())
    except ValueError as exc:  # also a valid form that is no time (month 13, a leap second)
        raise Problem(
            422,
            "Unprocessable Content",
            "as_of must be an RFC 3339 time with an offset, such as 2026-03-01T09:00:00Z"
            " (a + in the offset must be sent as %2B).",
        ) from exc
    try:
        # In UTC: PostgreSQL refuses offsets past 15:59, RFC 3339 allows up to 23:59.
        return moment.astimezone(UTC)
    except OverflowError:  # before year 1 or after 9999 once in UTC: the first or last time
        return datetime.min.replace(tzinfo=UTC) if moment.year == 1 else datetime.max.replace(tzinfo=UTC)


@api.route(
    bp,
    "get",
    "/users/me/logins",
    "The caller's login history, newest first",
    responses={200: [LoginOut], 404: None, **READ_ERRORS},
    secured=True,
    headers=LINK,
    parameters=[*PAGING, *CONSISTENCY],
)
@data_endpoint
def my_logins() -> ResponseReturnValue:
    read_your_writes()
    return _logins(_find_user(caller_id()))


@api.route(
    bp,
    "get",
    "/users/<user_id>/logins",
    "A user's login history, newest first (the user or an admin)",
    responses={200: [LoginOut], 403: None, 404: None, **READ_ERRORS},
    secured=True,
    headers=LINK,
    parameters=[*PAGING, *CONSISTENCY],
)
@data_endpoint
def user_logins(user_id: str) -> ResponseReturnValue:
    wanted = _uuid(user_id, "user id")
    require_self_or_admin(wanted)
    read_your_writes()
    return _logins(_find_user(wanted))


@api.route(
    bp,
    "get",
    "/users/me/history",
    "The caller's timeline: every event of the account, newest first",
    responses={200: [HistoryEntryOut], 404: None, **READ_ERRORS},
    secured=True,
    headers=LINK,
    parameters=[*PAGING, *CONSISTENCY],
)
@data_endpoint
def my_history() -> ResponseReturnValue:
    read_your_writes()
    return _history(_find_user(caller_id()))


@api.route(
    bp,
    "get",
    "/users/<user_id>/history",
    "A user's timeline: every event of the account, newest first (the user or an admin)",
    responses={200: [HistoryEntryOut], 403: None, 404: None, **READ_ERRORS},
    secured=True,
    headers=LINK,
    parameters=[*PAGING, *CONSISTENCY],
)
@data_endpoint
def user_history(user_id: str) -> ResponseReturnValue:
    wanted = _uuid(user_id, "user id")
    require_self_or_admin(wanted)
    read_your_writes()
    return _history(_find_user(wanted))


@api.route(
    bp,
    "get",
    "/users/me/sessions",
    "The caller's active sessions (started, not ended), most recently used first",
    responses={200: [SessionOut], 404: None, **READ_ERRORS},
    secured=True,
    parameters=CONSISTENCY,
)
@data_endpoint
def my_sessions() -> ResponseReturnValue:
    read_your_writes()
    user = _find_user(caller_id())
    # Ended sessions are kept in the table (their end and reason) but not listed; a session
    # whose start is not projected yet (only its refresh or end arrived) waits for it.
    query = (
        select(SessionView)
        .where(
            SessionView.user_id == user.id,
            SessionView.ended_at.is_(None),
            SessionView.started_at.is_not(None),
        )
        .order_by(SessionView.last_used_at.desc(), SessionView.started_at.desc(), SessionView.session_id)
        .limit(MAX_LIMIT)
    )
    found = db.session.execute(query).scalars().all()
    return jsonify(
        [
            SessionOut(
                session_id=str(s.session_id),
                started_at=s.started_at,
                last_used_at=s.last_used_at,
                ip=s.ip,
                user_agent=s.user_agent,
                new_device=s.new_device,
            ).model_dump(mode="json")
            for s in found
        ]
    )


@api.route(
    bp,
    "get",
    "/users/me/export",
    "Everything the system holds about the caller, as one JSON document (right of access)",
    responses={200: ExportOut, 404: None, **READ_ERRORS},
    secured=True,
    parameters=CONSISTENCY,
)
@data_endpoint
def export_me() -> ResponseReturnValue:
    read_your_writes()
    # One snapshot for the whole document (the engine runs reads in autocommit).
    db.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    user = _find_user(caller_id())
    every = db.session.execute
    sessions = every(
        select(SessionView).where(SessionView.user_id == user.id).order_by(SessionView.started_at.desc())
    ).scalars()
    logins = every(
        select(LoginHistoryEntry)
        .where(LoginHistoryEntry.user_id == user.id)
        .order_by(LoginHistoryEntry.occurred_at.desc(), LoginHistoryEntry.event_id.desc())
    ).scalars()
    history = every(
        select(TimelineEntry)
        .where(TimelineEntry.user_id == user.id)
        .order_by(TimelineEntry.sequence.desc(), TimelineEntry.event_id.desc())
    ).scalars()
    document = ExportOut.model_validate(
        {
            "exported_at": datetime.now(UTC),
            "account": user_json(user),
            "sessions": [
                {
                    "session_id": str(s.session_id),
                    "started_at": s.started_at,
                    "last_used_at": s.last_used_at,
                    "ended_at": s.ended_at,
                    "end_reason": s.end_reason,
                    "ip": s.ip,
                    "user_agent": s.user_agent,
                    "new_device": s.new_device,
                }
                for s in sessions
            ],
            "logins": [login_json(e) for e in logins],
            "history": [history_json(e) for e in history],
        }
    )
    response = jsonify(document.model_dump(mode="json"))
    response.headers["Content-Disposition"] = 'attachment; filename="my-account.json"'
    return response


def user_json(user: UserView | AccountState | Row[Any]) -> dict[str, Any]:
    return _user_out(user).model_dump(mode="json")


def _user_response(user: AccountState | Row[Any]) -> Response:
    # pydantic writes the JSON itself: the same document as jsonify(user_json(...)) without
    # building the dict and encoding it again.
    return Response(_user_out(user).model_dump_json() + "\n", mimetype="application/json")


def _user_out(user: UserView | AccountState | Row[Any]) -> UserOut:
    return UserOut(
        id=str(user.id),
        email=user.email,
        status=user.status,  # type: ignore[arg-type]
        roles=list(user.roles),
        registered_at=user.registered_at,
        last_login_at=user.last_login_at,
        password_changed_at=user.password_changed_at,
        login_count=user.login_count,
        failed_login_count=user.failed_login_count,
        version=user.version,
    )


def login_json(entry: LoginHistoryEntry) -> dict[str, Any]:
    return LoginOut(
        event_id=str(entry.event_id),
        outcome=entry.outcome,  # type: ignore[arg-type]
        reason=entry.reason,
        ip=entry.ip,
        user_agent=entry.user_agent,
        occurred_at=entry.occurred_at,
    ).model_dump(mode="json")


def _logins(user: Row[Any]) -> ResponseReturnValue:
    limit = read_limit()
    query = select(LoginHistoryEntry).where(LoginHistoryEntry.user_id == user.id)
    cursor = request.args.get("cursor")
    if cursor:
        occurred_at, event_id = decode_cursor(cursor, 2)
        query = query.where(
            tuple_(LoginHistoryEntry.occurred_at, LoginHistoryEntry.event_id)
            < tuple_(_timestamp(occurred_at), _uuid(event_id, "cursor"))
        )
    order = (LoginHistoryEntry.occurred_at.desc(), LoginHistoryEntry.event_id.desc())
    entries = db.session.execute(query.order_by(*order).limit(limit + 1)).scalars().all()
    last = entries[limit - 1] if len(entries) > limit else None
    next_cursor = encode_cursor(last.occurred_at.isoformat(), str(last.event_id)) if last else None
    return _paged([login_json(e) for e in entries[:limit]], next_cursor)


def history_json(entry: TimelineEntry) -> dict[str, Any]:
    return HistoryEntryOut(
        event_id=str(entry.event_id),
        type=entry.event_type,
        sequence=entry.sequence,
        occurred_at=entry.occurred_at,
        data=entry.data,
    ).model_dump(mode="json")


def _history(user: Row[Any]) -> ResponseReturnValue:
    """Newest first by sequence (the account's own order, not the clocks'), keyset-paginated."""
    limit = read_limit()
    query = select(TimelineEntry).where(TimelineEntry.user_id == user.id)
    cursor = request.args.get("cursor")
    if cursor:
        sequence, event_id = decode_cursor(cursor, 2)
        query = query.where(
            tuple_(TimelineEntry.sequence, TimelineEntry.event_id)
            < tuple_(_sequence(sequence), _uuid(event_id, "cursor"))
        )
    order = (TimelineEntry.sequence.desc(), TimelineEntry.event_id.desc())
    entries = db.session.execute(query.order_by(*order).limit(limit + 1)).scalars().all()
    last = entries[limit - 1] if len(entries) > limit else None
    next_cursor = encode_cursor(str(last.sequence), str(last.event_id)) if last else None
    return _paged([history_json(e) for e in entries[:limit]], next_cursor)


def _sequence(value: str) -> int:
    # Within PostgreSQL's integer, so a forged cursor is a 422, not a database error.
    if not (value.isascii() and value.isdigit()) or int(value) > 2**31 - 1:
        raise Problem(422, "Unprocessable Content", "Invalid cursor.")
    return int(value)


def _paged(items: list[dict[str, Any]], next_cursor: str | None) -> ResponseReturnValue:
    response = jsonify(items)
    if next_cursor:
        response.headers["Link"] = next_link(next_cursor)
    return response


# The user's row by primary key, on a pooled DBAPI connection with the SQL compiled once: the
# ORM's get (identity map, instance state, loader compilation) was a third of a read's CPU, and
# Core's execution context around one indexed SELECT still a sixth. No read changes the row.
_USERS = UserView.__table__
_USER_BY_ID_SQL = str(
    select(_USERS).where(_USERS.c.id == bindparam("user_id")).compile(dialect=psycopg2_dialect())
)


def _find_user(user_id: uuid.UUID) -> Any:
    engine = db.engine
    driver_error = engine.dialect.loaded_dbapi.Error
    connection = None
    try:
        connection = engine.raw_connection()  # a refused connection raises the driver's error too
        with connection.cursor(cursor_factory=NamedTupleCursor) as cursor:
            cursor.execute(_USER_BY_ID_SQL, {"user_id": str(user_id)})
            user = cursor.fetchone()
    except driver_error as exc:
        # What Core does with a driver error: a dropped connection is invalidated, and the
        # pool's other connections (dropped too, after a server restart) are let go, so that
        # data_endpoint's one retry gets a fresh one; any error reaches the handlers as
        # SQLAlchemy's (OperationalError: 503).
        dropped = connection is not None and engine.dialect.is_disconnect(
            exc, connection.dbapi_connection, None
        )
        if dropped:
            connection.invalidate(exc)  # type: ignore[union-attr]
            engine.dispose()
        raise DBAPIError.instance(
            _USER_BY_ID_SQL, None, exc, driver_error, connection_invalidated=dropped
        ) from exc
    finally:
        if connection is not None:
            connection.close()
    # Not yet registered on the read side, or erased (a tombstone): nobody.
    if user is None or user.registered_at is None or user.deleted_at is not None:
        raise Problem(404, "Not Found", "No such user.")
    return user


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError) as exc:
        raise Problem(422, "Unprocessable Content", f"Invalid {what}.") from exc


def _timestamp(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except (ValueError, TypeError) as exc:
        raise Problem(422, "Unprocessable Content", "Invalid cursor.") from exc
    if moment.tzinfo is None:
        raise Problem(422, "Unprocessable Content", "Invalid cursor.")
    return moment
