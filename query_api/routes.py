"""HTTP endpoints of the read API: users and their login history, from query_db only."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select, tuple_

from query_api.extensions import db
from query_api.models import LoginHistoryEntry, UserView
from query_api.paging import Page, decode_cursor, encode_cursor, read_limit
from web.problems import Problem

bp = Blueprint("query", __name__)


@bp.get("/health")
def health() -> ResponseReturnValue:
    return jsonify(status="OK")


def user_json(user: UserView) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "email": user.email,
        "roles": list(user.roles),
        "registered_at": _iso(user.registered_at),
        "last_login_at": _iso(user.last_login_at),
        "login_count": user.login_count,
        "failed_login_count": user.failed_login_count,
        "version": user.version,
    }


def login_json(entry: LoginHistoryEntry) -> dict[str, Any]:
    return {
        "event_id": str(entry.event_id),
        "outcome": entry.outcome,
        "reason": entry.reason,
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "occurred_at": _iso(entry.occurred_at),
    }


@bp.get("/users")
def list_users() -> ResponseReturnValue:
    limit = read_limit()
    query = select(UserView).where(UserView.registered_at.is_not(None))
    email = request.args.get("email")
    if email is not None:
        query = query.where(UserView.email == email.strip().lower())
    cursor = request.args.get("cursor")
    if cursor:
        (after,) = decode_cursor(cursor, 1)
        query = query.where(UserView.id > _uuid(after, "cursor"))
    rows = db.session.execute(query.order_by(UserView.id).limit(limit + 1)).scalars().all()
    page = Page(rows[:limit], rows[limit] if len(rows) > limit else None)
    next_cursor = encode_cursor(str(page.items[-1].id)) if page.more else None
    return _paged([user_json(u) for u in page.items], next_cursor, "query.list_users")


@bp.get("/users/<user_id>")
def get_user(user_id: str) -> ResponseReturnValue:
    user = _find_user(user_id)
    return jsonify(user_json(user))


@bp.get("/users/<user_id>/logins")
def user_logins(user_id: str) -> ResponseReturnValue:
    user = _find_user(user_id)
    limit = read_limit()
    query = select(LoginHistoryEntry).where(LoginHistoryEntry.user_id == user.id)
    cursor = request.args.get("cursor")
    if cursor:
        occurred_at, event_id = decode_cursor(cursor, 2)
        query = query.where(
            tuple_(LoginHistoryEntry.occurred_at, LoginHistoryEntry.event_id)
            < tuple_(_timestamp(occurred_at), _uuid(event_id, "cursor"))
        )
    rows = (
        db.session.execute(
            query.order_by(LoginHistoryEntry.occurred_at.desc(), LoginHistoryEntry.event_id.desc()).limit(
                limit + 1
            )
        )
        .scalars()
        .all()
    )
    items = rows[:limit]
    next_cursor = (
        encode_cursor(items[-1].occurred_at.isoformat(), str(items[-1].event_id))
        if len(rows) > limit
        else None
    )
    return _paged([login_json(e) for e in items], next_cursor, "query.user_logins", user_id=user_id)


def _paged(
    items: list[dict[str, Any]], next_cursor: str | None, endpoint: str, **values: str
) -> ResponseReturnValue:
    response = jsonify(items)
    if next_cursor:
        args = {k: v for k, v in request.args.items() if k != "cursor"}
        link = url_for(endpoint, **values, **args, cursor=next_cursor, _external=False)
        response.headers["Link"] = f'<{link}>; rel="next"'
    return response


def _find_user(user_id: str) -> UserView:
    user = db.session.get(UserView, _uuid(user_id, "user id"))
    if user is None or user.registered_at is None:
        raise Problem(404, "Not Found", "No such user.")
    return user


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError) as exc:
        raise Problem(422, "Unprocessable Content", f"Invalid {what}.") from exc


def _timestamp(value: str) -> Any:
    from datetime import datetime

    try:
        return datetime.fromisoformat(value)
    except (ValueError, TypeError) as exc:
        raise Problem(422, "Unprocessable Content", "Invalid cursor.") from exc


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
