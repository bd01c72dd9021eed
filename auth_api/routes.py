"""HTTP endpoints of the write API; business rules live in ``accounts``."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from flask_jwt_extended import create_access_token, create_refresh_token, get_jwt, jwt_required

from auth_api.accounts import (
    AccountLocked,
    AccountService,
    CommandContext,
    EmailTaken,
    InvalidCredentials,
)
from auth_api.extensions import db
from auth_api.schemas import LoginRequest, LoginResponse, RefreshResponse, RegisterRequest, RegisterResponse
from web.json_body import read_json
from web.openapi import ApiDocument
from web.problems import Problem

bp = Blueprint("auth", __name__)
api = ApiDocument(
    "auth_api",
    "1.0.0",
    "Write side of the CQRS user service: commands that register users and log them in. "
    "Every answer carries the event id; pass it as X-Consistency-Token to the query API "
    "to read your own write.",
)
BODY_ERRORS = {400: None, 413: None, 415: None, 422: None}
RETRY_AFTER = {429: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}}}


def _service() -> AccountService:
    return AccountService(
        session=db.session,
        hash_method=current_app.config["PASSWORD_HASH_METHOD"],
        lockout=current_app.extensions["lockout_policy"],
        on_commit=current_app.extensions["relay_kick"],
    )


def _context() -> CommandContext:
    agent = request.headers.get("User-Agent")
    return CommandContext(
        ip=(request.remote_addr or None),
        user_agent=agent[:512] if agent else None,
        request_id=g.get("request_id"),
    )


def _access_ttl() -> int:
    return int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds())


@bp.get("/health")
@api.operation("get", "/health", "Liveness", responses={200: None})
def health() -> ResponseReturnValue:
    return jsonify(status="OK")


@bp.post("/register")
@api.operation(
    "post",
    "/register",
    "Register a user (emits UserRegistered)",
    request=RegisterRequest,
    responses={201: RegisterResponse, 409: None, 503: None, **BODY_ERRORS},
)
def register() -> ResponseReturnValue:
    body = read_json(RegisterRequest)
    try:
        user, event_id = _service().register(body.email, body.password, _context())
    except EmailTaken as exc:
        raise Problem(409, "Conflict", "This email is already registered.") from exc
    answer = RegisterResponse(id=str(user.id), event_id=str(event_id))
    return jsonify(answer.model_dump()), 201


@bp.post("/login")
@api.operation(
    "post",
    "/login",
    "Log in (emits UserLoggedIn or UserLoginFailed)",
    request=LoginRequest,
    responses={200: LoginResponse, 401: None, 429: None, 503: None, **BODY_ERRORS},
    headers=RETRY_AFTER,
)
def login() -> ResponseReturnValue:
    body = read_json(LoginRequest)
    try:
        user, event_id = _service().log_in(body.email, body.password, _context())
    except InvalidCredentials as exc:
        raise Problem(
            401,
            "Unauthorized",
            "Invalid email or password.",
            headers={"WWW-Authenticate": 'Bearer realm="auth_api"'},
        ) from exc
    except AccountLocked as exc:
        raise Problem(
            429,
            "Too Many Requests",
            "Too many failed logins; the account is locked for a while.",
            headers={"Retry-After": str(exc.retry_after)},
            retry_after=exc.retry_after,
        ) from exc
    claims = {"roles": list(user.roles), "email": user.email}
    access = create_access_token(identity=str(user.id), additional_claims=claims)
    refresh = create_refresh_token(identity=str(user.id), additional_claims=claims)
    answer = LoginResponse(
        token=access,
        access_token=access,
        refresh_token=refresh,
        expires_in=_access_ttl(),
        event_id=str(event_id),
    )
    return jsonify(answer.model_dump())


@bp.post("/refresh")
@api.operation(
    "post",
    "/refresh",
    "A new access token for a refresh token",
    responses={200: RefreshResponse, 401: None, 503: None},
    secured=True,
)
@jwt_required(refresh=True)
def refresh() -> ResponseReturnValue:
    claims = get_jwt()
    # Roles are re-read from the write model: a revoked role does not survive a refresh.
    from auth_api.models import User

    user = db.session.get(User, claims["sub"])
    if user is None:
        raise Problem(401, "Unauthorized", "The user of this token no longer exists.")
    access = create_access_token(
        identity=str(user.id), additional_claims={"roles": list(user.roles), "email": user.email}
    )
    return jsonify(RefreshResponse(access_token=access, expires_in=_access_ttl()).model_dump())
