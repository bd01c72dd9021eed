"""HTTP endpoints of the read API: users and their login history, from query_db only.

Every data endpoint needs an access token signed by auth_api. A request may name the
event it must see with ``X-Consistency-Token`` (read-your-writes).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from flask_jwt_extended import jwt_required
from sqlalchemy import select, tuple_

from query_api.access import caller_id, require_admin, require_self_or_admin
from query_api.consistency import HEADER as CONSISTENCY_HEADER
from query_api.consistency import read_your_writes
from query_api.extensions import db
from query_api.paging import MAX_LIMIT, decode_cursor, encode_cursor, next_link, read_limit
from query_api.schemas import HealthOut, LoginOut, SessionOut, UserOut
from read_model import LoginHistoryEntry, SessionView, UserView
from web.openapi import ApiDocument
from web.problems import Problem

bp = Blueprint("query", __name__)
api = ApiDocument(
    "query_api",
    "1.0.0",
    "Read side of the CQRS user service: projected users and login history. Send "
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
    }
}


def data_endpoint(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """A valid access token first; the view checks who may read what, then calls
    ``read_your_writes()`` before it reads, so no caller waits for what it may not see."""

    @wraps(view)
    @jwt_required()
    def guarded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
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
    "The caller's own user",
    responses={200: UserOut, 404: None, **READ_ERRORS},
    secured=True,
    parameters=CONSISTENCY,
    links=ONE_USER_LINKS,
)
@data_endpoint
def get_me() -> ResponseReturnValue:
    read_your_writes()
    return jsonify(user_json(_find_user(caller_id())))


@api.route(
    bp,
    "get",
    "/users/<user_id>",
    "One user (the user itself or an admin)",
    responses={200: UserOut, 403: None, 404: None, **READ_ERRORS},
    secured=True,
    parameters=CONSISTENCY,
    links=ONE_USER_LINKS,
)
@data_endpoint
def get_user(user_id: str) -> ResponseReturnValue:
    wanted = _uuid(user_id, "user id")
    require_self_or_admin(wanted)
    read_your_writes()
    return jsonify(user_json(_find_user(wanted)))


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
    "/users/me/sessions",
    "The caller's active sessions (logins not yet ended), newest first",
    responses={200: [SessionOut], 404: None, **READ_ERRORS},
    secured=True,
    parameters=CONSISTENCY,
)
@data_endpoint
def my_sessions() -> ResponseReturnValue:
    read_your_writes()
    user = _find_user(caller_id())
    query = (
        select(SessionView)
        .where(SessionView.user_id == user.id, SessionView.ended_at.is_(None))
        .order_by(SessionView.started_at.desc().nulls_last(), SessionView.session_id)
        .limit(MAX_LIMIT)
    )
    found = db.session.execute(query).scalars().all()
    return jsonify(
        [
            SessionOut(
                session_id=str(s.session_id), started_at=s.started_at, ip=s.ip, user_agent=s.user_agent
            ).model_dump(mode="json")
            for s in found
        ]
    )


def user_json(user: UserView) -> dict[str, Any]:
    return UserOut(
        id=str(user.id),
        email=user.email,
        roles=list(user.roles),
        registered_at=user.registered_at,
        last_login_at=user.last_login_at,
        login_count=user.login_count,
        failed_login_count=user.failed_login_count,
        version=user.version,
    ).model_dump(mode="json")


def login_json(entry: LoginHistoryEntry) -> dict[str, Any]:
    return LoginOut(
        event_id=str(entry.event_id),
        outcome=entry.outcome,  # type: ignore[arg-type]
        reason=entry.reason,
        ip=entry.ip,
        user_agent=entry.user_agent,
        occurred_at=entry.occurred_at,
    ).model_dump(mode="json")


def _logins(user: UserView) -> ResponseReturnValue:
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


def _paged(items: list[dict[str, Any]], next_cursor: str | None) -> ResponseReturnValue:
    response = jsonify(items)
    if next_cursor:
        response.headers["Link"] = next_link(next_cursor)
    return response


def _find_user(user_id: uuid.UUID) -> UserView:
    user = db.session.get(UserView, user_id)
    if user is None or user.registered_at is None:
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
