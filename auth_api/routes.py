"""HTTP endpoints of the write API: thin, the rules live in ``auth_api.commands``."""

from __future__ import annotations

import uuid

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from flask_jwt_extended import create_access_token, create_refresh_token, get_jwt, jwt_required

from auth_api import commands
from auth_api.bootstrap import WriteSide
from auth_api.commands import Account, AccountLocked, EmailTaken, InvalidCredentials
from auth_api.models import Device
from auth_api.rate_limits import per_address, per_email
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
_FIELD = {"schema": {"type": "string"}}
RATE_LIMIT_FIELDS = {
    "RateLimit": {**_FIELD, "description": "IETF RateLimit: remaining quota and seconds to reset"},
    "RateLimit-Policy": {**_FIELD, "description": "IETF RateLimit-Policy: quota and window"},
}
# Every unauthenticated endpoint is rate limited: any answer may be a 429.
LIMITED = {
    429: {
        "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"},
        **RATE_LIMIT_FIELDS,
    }
}


def _write_side() -> WriteSide:
    return current_app.extensions["write_side"]


def _device() -> Device:
    agent = request.headers.get("User-Agent")
    return Device(ip=request.remote_addr or None, user_agent=agent[:512] if agent else None)


def _headers() -> dict[str, str]:
    """Outbox headers: the correlation id travels with the event."""
    request_id = g.get("request_id")
    return {"request_id": request_id} if request_id else {}


def _access_ttl() -> int:
    return int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds())


def _claims(account: Account) -> dict[str, object]:
    return {"roles": list(account.roles), "email": account.email}


@api.route(bp, "get", "/health", "Liveness", responses={200: None})
def health() -> ResponseReturnValue:
    return jsonify(status="OK")


@api.route(
    bp,
    "post",
    "/register",
    "Register a user (emits UserRegistered)",
    request=RegisterRequest,
    responses={201: RegisterResponse, 409: None, 429: None, 503: None, **BODY_ERRORS},
    headers={201: RATE_LIMIT_FIELDS, **LIMITED},
    links={
        201: {
            "LogIn": {
                "operationId": "post_login",
                "requestBody": {"email": "$request.body#/email", "password": "$request.body#/password"},
                "description": "Log in with the credentials just registered",
            }
        }
    },
)
@per_address
@per_email
def register() -> ResponseReturnValue:
    body = read_json(RegisterRequest)
    side = _write_side()
    try:
        outcome = commands.register(
            side.unit_of_work(), side.hasher, body.email, body.password, headers=_headers()
        )
    except EmailTaken as exc:
        raise Problem(409, "Conflict", "This email is already registered.") from exc
    answer = RegisterResponse(id=str(outcome.account.id), event_id=str(outcome.event_id))
    return jsonify(answer.model_dump()), 201


@api.route(
    bp,
    "post",
    "/login",
    "Log in (emits UserLoggedIn or UserLoginFailed)",
    request=LoginRequest,
    responses={200: LoginResponse, 401: None, 429: None, 503: None, **BODY_ERRORS},
    headers={200: RATE_LIMIT_FIELDS, **LIMITED},
)
@per_address
@per_email
def login() -> ResponseReturnValue:
    body = read_json(LoginRequest)
    side = _write_side()
    try:
        outcome = commands.log_in(
            side.unit_of_work(),
            side.hasher,
            side.lockout,
            body.email,
            body.password,
            _device(),
            failure_secret=side.failure_secret,
            headers=_headers(),
        )
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
    claims = _claims(outcome.account)
    identity = str(outcome.account.id)
    access = create_access_token(identity=identity, additional_claims=claims)
    refresh = create_refresh_token(identity=identity, additional_claims=claims)
    answer = LoginResponse(
        token=access,
        access_token=access,
        refresh_token=refresh,
        expires_in=_access_ttl(),
        event_id=str(outcome.event_id),
    )
    return jsonify(answer.model_dump())


@api.route(
    bp,
    "post",
    "/refresh",
    "A new access token for a refresh token",
    responses={200: RefreshResponse, 401: None, 429: None, 503: None},
    secured=True,
    headers={200: RATE_LIMIT_FIELDS, **LIMITED},
)
@per_address
@jwt_required(refresh=True)
def refresh() -> ResponseReturnValue:
    # Roles are re-read from the write model: a revoked role does not survive a refresh.
    try:
        user_id = uuid.UUID(str(get_jwt()["sub"]))
    except (KeyError, ValueError) as exc:
        raise Problem(401, "Unauthorized", "The token has no valid subject.") from exc
    account = commands.current_account(_write_side().unit_of_work(), user_id)
    if account is None:
        raise Problem(401, "Unauthorized", "The user of this token no longer exists.")
    access = create_access_token(identity=str(account.id), additional_claims=_claims(account))
    return jsonify(RefreshResponse(access_token=access, expires_in=_access_ttl()).model_dump())
