"""Who may read what: tokens are verified with the public key only; admins read everyone."""

from __future__ import annotations

import uuid

from flask_jwt_extended import get_jwt

from web.problems import Problem

ADMIN = "admin"


def caller_id() -> uuid.UUID:
    try:
        return uuid.UUID(get_jwt()["sub"])
    except (KeyError, ValueError, TypeError) as exc:
        raise Problem(401, "Unauthorized", "The token has no valid subject.") from exc


def is_admin() -> bool:
    roles = get_jwt().get("roles") or []
    return isinstance(roles, list) and ADMIN in roles


def require_admin() -> None:
    if not is_admin():
        raise Problem(403, "Forbidden", "This needs the admin role.")


def require_self_or_admin(user_id: uuid.UUID) -> None:
    if user_id != caller_id() and not is_admin():
        raise Problem(403, "Forbidden", "You may read only your own data.")
