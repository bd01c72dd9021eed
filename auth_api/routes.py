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
from web.consistency_token import ConsistencyClaim, sign_consistency_token
from web.json_body import read_json
from web.jwt_setup import WRITE_API
from web.openapi import ApiDocument
from web.problems import Problem

bp = Blueprint("auth", __name__)
api = ApiDocument(
    "auth_api",
    "1.0.0",
    "Write side of the CQRS user service: commands that register users and log them in. "
    "Every answer carries the event id and a consistency token; pass the token as "
    "X-Consistency-Token to the query API to read your own write.",
)
BODY_ERRORS = {400: None, 413: None, 415: None, 422: None}
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="auth_api"'}
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
    answer = RegisterResponse(
        id=str(outcome.account.id), event_id=str(outcome.event_id), consistency_token=_consistency(outcome)
    )
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
            headers=CHALLENGE,
        ) from exc
    except AccountLocked as exc:
        raise Problem(
            429,
            "Too Many Requests",
            "Too many failed logins; the account is locked for a while.",
            headers={"Retry-After": str(exc.retry_after)},
            retry_after=exc.retry_after,
        ) from exc
    access, refresh = _tokens(outcome)
    answer = LoginResponse(
        token=access,
        access_token=access,
        refresh_token=refresh,
        expires_in=_access_ttl(),
        event_id=str(outcome.event_id),
        consistency_token=_consistency(outcome),
    )
    return jsonify(answer.model_dump())


@api.route(
    bp,
    "post",
    "/refresh",
    "Rotate a refresh token: a new access token and the next refresh token (single use)",
    responses={200: RefreshResponse, 401: None, 429: None, 503: None},
    secured=True,
    headers={200: RATE_LIMIT_FIELDS, **LIMITED},
)
@per_address
@jwt_required(refresh=True)
def refresh() -> ResponseReturnValue:
    """Rotate the refresh token (single use); roles are re-read, so a change applies now."""
    claims = get_jwt()
    try:
        user_id, session_id, jti = (uuid.UUID(str(claims[k])) for k in ("sub", "sid", "jti"))
    except (KeyError, ValueError) as exc:
        raise Problem(401, "Unauthorized", "The token names no session.", headers=CHALLENGE) from exc
    uow = _write_side().unit_of_work()
    try:
        outcome = commands.refresh(uow, user_id, session_id, jti, headers=_headers())
    except commands.SessionRefused as exc:
        detail = f"The session cannot be refreshed: {exc}."
        raise Problem(401, "Unauthorized", detail, headers=CHALLENGE) from exc
    access, refresh_token = _tokens(outcome)
    answer = RefreshResponse(access_token=access, refresh_token=refresh_token, expires_in=_access_ttl())
    return jsonify(answer.model_dump())


def _consistency(outcome: commands.Outcome) -> str:
    """A signed, caller-bound token for a read-your-writes wait on the query API."""
    assert outcome.event_id is not None and outcome.sequence is not None
    claim = ConsistencyClaim(outcome.account.id, outcome.event_id, outcome.sequence)
    return sign_consistency_token(
        current_app.config["JWT_PRIVATE_KEY"], claim, current_app.config["CONSISTENCY_TOKEN_TTL"]
    )


def _tokens(outcome: commands.Outcome) -> tuple[str, str]:
    """An access token for both APIs, and the session's next single-use refresh token."""
    assert outcome.session is not None
    identity = str(outcome.account.id)
    session = str(outcome.session.session_id)
    access_claims = {**_claims(outcome.account), "sid": session}
    access = create_access_token(identity=identity, additional_claims=access_claims)
    refresh_claims = {"sid": session, "jti": str(outcome.session.refresh_jti), "aud": WRITE_API}
    return access, create_refresh_token(identity=identity, additional_claims=refresh_claims)
