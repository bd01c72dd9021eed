"""HTTP endpoints of the write API: thin, the rules live in ``auth_api.commands``."""

from __future__ import annotations

import uuid

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from flask_jwt_extended import create_access_token, create_refresh_token, get_jwt, jwt_required

from auth_api import commands
from auth_api.bootstrap import WriteSide
from auth_api.commands import Account, AccountLocked, Caller, EmailTaken, InvalidCredentials
from auth_api.models import Device
from auth_api.rate_limits import per_address, per_email
from auth_api.schemas import (
    ChangePasswordRequest,
    CommandResponse,
    ConfirmEmailRequest,
    DeactivateRequest,
    DeleteAccountRequest,
    EmailChangedResponse,
    EmailChangeRequest,
    EmailChangeResponse,
    LoginRequest,
    LoginResponse,
    RefreshResponse,
    RegisterRequest,
    RegisterResponse,
)
from web.consistency_token import ConsistencyClaim, sign_consistency_token
from web.json_body import read_json
from web.jwt_setup import WRITE_API
from web.openapi import ApiDocument
from web.problems import Problem

bp = Blueprint("auth", __name__)
api = ApiDocument(
    "auth_api",
    "1.0.0",
    "Write side of the CQRS user service: commands that register users, log them in and out, "
    "change their password and email, and let admins deactivate accounts. "
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
    responses={200: LoginResponse, 401: None, 403: None, 429: None, 503: None, **BODY_ERRORS},
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
        raise _locked(exc) from exc
    except commands.AccountDeactivated as exc:
        raise Problem(403, "Forbidden", "This account is deactivated; contact an administrator.") from exc
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


def _locked(exc: AccountLocked) -> Problem:
    return Problem(
        429,
        "Too Many Requests",
        "Too many failed password attempts; the account is locked for a while.",
        headers={"Retry-After": str(exc.retry_after)},
        retry_after=exc.retry_after,
    )


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


# --- the account's own commands (access token) ---

ACCOUNT_ERRORS = {401: None, 429: None, 503: None}


def _caller() -> Caller:
    claims = get_jwt()
    try:
        return Caller(uuid.UUID(str(claims["sub"])), uuid.UUID(str(claims["sid"])))
    except (KeyError, ValueError) as exc:
        raise Problem(401, "Unauthorized", "The token names no session.", headers=CHALLENGE) from exc


def _answer(
    outcome: commands.Outcome, model: type[CommandResponse] = CommandResponse, **extra: object
) -> dict[str, object]:
    """The command's answer; a token to wait on only when it emitted something."""
    token = _consistency(outcome) if outcome.event_id is not None else None
    return model(
        event_id=str(outcome.event_id) if outcome.event_id else None,
        consistency_token=token,
        ended_sessions=outcome.ended_sessions,
        **extra,
    ).model_dump()


def _run(command, *args: object, **kwargs: object) -> commands.Outcome:  # noqa: ANN001 - any command
    """Run an account command, its refusals turned into problem answers."""
    try:
        return command(*args, headers=_headers(), **kwargs)
    except commands.SessionRefused as exc:
        raise Problem(401, "Unauthorized", f"The session is not valid: {exc}.", headers=CHALLENGE) from exc
    except AccountLocked as exc:
        raise _locked(exc) from exc
    except commands.WrongPassword as exc:
        raise Problem(403, "Forbidden", "The current password is wrong.") from exc
    except commands.Forbidden as exc:
        raise Problem(403, "Forbidden", f"Not allowed: {exc}.") from exc
    except commands.UnknownUser as exc:
        raise Problem(404, "Not Found", "No such user.") from exc
    except EmailTaken as exc:
        raise Problem(409, "Conflict", "This email is already registered.") from exc
    except commands.SameEmail as exc:
        raise Problem(422, "Unprocessable Content", "This is the account's address already.") from exc
    except commands.NoPendingChange as exc:
        detail = "No email change is waiting for a code (it expired, was used, or was never asked for)."
        raise Problem(409, "Conflict", detail) from exc
    except commands.WrongCode as exc:
        detail = f"The code is wrong; {exc.attempts_left} attempt(s) left."
        if exc.attempts_left == 0:
            detail = "The code is wrong and no attempt is left; ask for a new code."
        raise Problem(422, "Unprocessable Content", detail, attempts_left=exc.attempts_left) from exc


def _check() -> commands.PasswordCheck:
    side = _write_side()
    return commands.PasswordCheck(side.hasher, side.lockout, side.failure_secret)


@api.route(
    bp,
    "post",
    "/logout",
    "End this session (emits SessionEnded): its refresh token stops working",
    responses={200: CommandResponse, **ACCOUNT_ERRORS},
    secured=True,
    headers=LIMITED,
)
@per_address
@jwt_required()
def logout() -> ResponseReturnValue:
    outcome = _run(commands.log_out, _write_side().unit_of_work(), _caller())
    return jsonify(_answer(outcome))


@api.route(
    bp,
    "post",
    "/logout-all",
    "End every session of the account (one SessionEnded each), this one included",
    responses={200: CommandResponse, **ACCOUNT_ERRORS},
    secured=True,
    headers=LIMITED,
)
@per_address
@jwt_required()
def logout_all() -> ResponseReturnValue:
    outcome = _run(commands.log_out_everywhere, _write_side().unit_of_work(), _caller())
    return jsonify(_answer(outcome))


@api.route(
    bp,
    "post",
    "/users/me/password",
    "Change the password (emits PasswordChanged); every other session ends",
    request=ChangePasswordRequest,
    responses={200: CommandResponse, 403: None, **ACCOUNT_ERRORS, **BODY_ERRORS},
    secured=True,
    headers=LIMITED,
)
@per_address
@jwt_required()
def change_password() -> ResponseReturnValue:
    body = read_json(ChangePasswordRequest)
    uow = _write_side().unit_of_work()
    passwords = (body.current_password, body.new_password)
    outcome = _run(commands.change_password, uow, _check(), _caller(), *passwords)
    return jsonify(_answer(outcome))


@api.route(
    bp,
    "post",
    "/users/me/email",
    "Ask to change the email (emits EmailChangeRequested): a code is mailed to the new address",
    request=EmailChangeRequest,
    responses={202: EmailChangeResponse, 403: None, 409: None, **ACCOUNT_ERRORS, **BODY_ERRORS},
    secured=True,
    headers=LIMITED,
    links={
        202: {
            "Confirm": {
                "operationId": "post_users_me_email_confirm",
                "description": "Confirm with the code mailed to the new address",
            }
        }
    },
)
@per_address
@jwt_required()
def request_email_change() -> ResponseReturnValue:
    body = read_json(EmailChangeRequest)
    side = _write_side()
    outcome = _run(
        commands.request_email_change,
        side.unit_of_work(),
        _check(),
        side.codes,
        _caller(),
        body.password,
        body.new_email,
    )
    assert outcome.expires_at is not None
    expires_at = outcome.expires_at.isoformat().replace("+00:00", "Z")
    return jsonify(_answer(outcome, EmailChangeResponse, expires_at=expires_at)), 202


@api.route(
    bp,
    "post",
    "/users/me/email/confirm",
    "Confirm an email change with the mailed code (emits EmailChanged)",
    request=ConfirmEmailRequest,
    responses={200: EmailChangedResponse, 409: None, **ACCOUNT_ERRORS, **BODY_ERRORS},
    secured=True,
    headers=LIMITED,
)
@per_address
@jwt_required()
def confirm_email_change() -> ResponseReturnValue:
    body = read_json(ConfirmEmailRequest)
    side = _write_side()
    uow, secret = side.unit_of_work(), side.failure_secret
    outcome = _run(commands.confirm_email_change, uow, secret, side.codes, _caller(), body.code)
    return jsonify(_answer(outcome, EmailChangedResponse, email=outcome.account.email))


@api.route(
    bp,
    "delete",
    "/users/me",
    "Delete the account (emits UserDeleted): it is erased everywhere and its email is free again",
    request=DeleteAccountRequest,
    responses={200: CommandResponse, 403: None, **ACCOUNT_ERRORS, **BODY_ERRORS},
    secured=True,
    headers=LIMITED,
)
@per_address
@jwt_required()
def delete_account() -> ResponseReturnValue:
    body = read_json(DeleteAccountRequest)
    outcome = _run(commands.delete_account, _write_side().unit_of_work(), _check(), _caller(), body.password)
    return jsonify(_answer(outcome))


# --- admin commands ---


@api.route(
    bp,
    "post",
    "/admin/users/<uuid:user_id>/deactivate",
    "Deactivate an account (admin; emits UserDeactivated): its sessions end, login and refresh stop",
    request=DeactivateRequest,
    responses={200: CommandResponse, 403: None, 404: None, **ACCOUNT_ERRORS, **BODY_ERRORS},
    secured=True,
    headers=LIMITED,
)
@per_address
@jwt_required()
def deactivate(user_id: uuid.UUID) -> ResponseReturnValue:
    body = read_json(DeactivateRequest)
    uow = _write_side().unit_of_work()
    outcome = _run(commands.deactivate, uow, user_id, reason=body.reason, by=_caller())
    return jsonify(_answer(outcome))


@api.route(
    bp,
    "post",
    "/admin/users/<uuid:user_id>/reactivate",
    "Reactivate a deactivated account (admin; emits UserReactivated)",
    responses={200: CommandResponse, 403: None, 404: None, **ACCOUNT_ERRORS},
    secured=True,
    headers=LIMITED,
)
@per_address
@jwt_required()
def reactivate(user_id: uuid.UUID) -> ResponseReturnValue:
    outcome = _run(commands.reactivate, _write_side().unit_of_work(), user_id, by=_caller())
    return jsonify(_answer(outcome))


@api.route(
    bp,
    "delete",
    "/admin/users/<uuid:user_id>",
    "Delete an account (admin; emits UserDeleted): it is erased everywhere",
    responses={200: CommandResponse, 403: None, 404: None, **ACCOUNT_ERRORS},
    secured=True,
    headers=LIMITED,
)
@per_address
@jwt_required()
def delete_user(user_id: uuid.UUID) -> ResponseReturnValue:
    side = _write_side()
    outcome = _run(commands.delete_user, side.unit_of_work(), side.failure_secret, user_id, by=_caller())
    return jsonify(_answer(outcome))
