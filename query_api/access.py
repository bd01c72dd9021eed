"""Who may read what: tokens are verified with the public key only; admins read everyone."""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import g, request
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import (
    InvalidHeaderError,
    NoAuthorizationError,
    UserClaimsVerificationError,
    WrongTokenError,
)

from web.jwt_setup import has_required_claims
from web.problems import Problem

ADMIN = "admin"
_FIELDS = re.compile(r",\s*")


def authenticate() -> None:
    """Verify the request's bearer token and keep its claims for this request.

    Not ``jwt_required``: after verifying a token it decodes the token's header once more,
    and PyJWT 2.15 checks that header character by character in Python, a sixth of a read's
    CPU. The token is verified by the same JWTManager (keys, algorithm, audience, issuer, its
    cache of verified tokens), the same checks follow, and a failure raises the same
    flask-jwt-extended error, so it gets the same problem answer.
    """
    claims = decode_token(_bearer_token())
    if claims.get("type") != "access":
        raise WrongTokenError("Only non-refresh tokens are allowed")
    if not has_required_claims(claims):
        raise UserClaimsVerificationError("User claims verification failed", {}, claims)
    g.token_claims = claims


def _bearer_token() -> str:
    # Parsed as flask-jwt-extended parses it: one "Bearer <JWT>" among comma-separated fields.
    field = request.headers.get("Authorization", "").strip().strip(",")
    if not field:
        raise NoAuthorizationError("Missing Authorization Header")
    bearers = [value for value in _FIELDS.split(field) if value.split()[:1] == ["Bearer"]]
    if len(bearers) != 1:
        raise NoAuthorizationError("Missing 'Bearer' type in 'Authorization' header.")
    parts = bearers[0].split()
    if len(parts) != 2:
        raise InvalidHeaderError("Bad Authorization header. Expected 'Authorization: Bearer <JWT>'")
    return parts[1]


def _claims() -> dict[str, Any]:
    return g.token_claims  # set by authenticate(); a view without it is a programming error


def caller_id() -> uuid.UUID:
    try:
        return uuid.UUID(_claims()["sub"])
    except (KeyError, ValueError, TypeError) as exc:
        raise Problem(401, "Unauthorized", "The token has no valid subject.") from exc


def is_admin() -> bool:
    roles = _claims().get("roles") or []
    return isinstance(roles, list) and ADMIN in roles


def require_admin() -> None:
    if not is_admin():
        raise Problem(403, "Forbidden", "This needs the admin role.")


def require_self_or_admin(user_id: uuid.UUID) -> None:
    if user_id != caller_id() and not is_admin():
        raise Problem(403, "Forbidden", "You may read only your own data.")
