"""The write API on the real auth database: validation, lockout, tokens, roles."""

from __future__ import annotations

import json
import uuid

import jwt
import pytest
from sqlalchemy import text

from auth_api.extensions import db
from tests.support.cli import flask_cli
from tests.support.outbox import outbox_events

PASSWORD = "correct horse battery"
PROBLEM = "application/problem+json"


@pytest.fixture
def client(auth_app):
    return auth_app.test_client()


def _email() -> str:
    return f"api-{uuid.uuid4().hex[:10]}@example.com"


def _register(client, email=None, password=PASSWORD):
    return client.post("/register", json={"email": email or _email(), "password": password})


def _events(auth_app, user_id: str) -> list[dict]:
    return outbox_events(auth_app, user_id)


def test_register_answers_the_seed_contract_and_writes_one_outbox_row(client, auth_app):
    response = _register(client)
    assert response.status_code == 201
    body = response.get_json()
    assert body["message"] == "User registered successfully"
    uuid.UUID(body["id"]), uuid.UUID(body["event_id"])
    [event] = _events(auth_app, body["id"])
    assert (event["type"], event["id"], event["sequence"]) == ("UserRegistered", body["event_id"], 1)


@pytest.mark.parametrize(
    "kwargs, status, title",
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "Malformed JSON"),
        ({"data": b"\xff\xfe", "content_type": "application/json"}, 400, "Malformed JSON"),
        ({"data": "email=a", "content_type": "application/x-www-form-urlencoded"}, 415, None),
        ({"data": "{}"}, 415, None),
        ({"json": ["not", "an", "object"]}, 422, None),
        (
            {
                "data": json.dumps({"email": "a@example.com", "password": "x" * 70000}),
                "content_type": "application/json",
            },
            413,
            None,
        ),
    ],
)
def test_bad_bodies_get_problem_details(client, kwargs, status, title):
    response = client.post("/register", **kwargs)
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    problem = response.get_json()
    assert problem["status"] == status
    if title:
        assert problem["title"] == title


@pytest.mark.parametrize(
    "body, field",
    [
        ({"password": PASSWORD}, "email"),
        ({"email": "a@example.com"}, "password"),
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": 42, "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": 12345678}, "password"),
        ({"email": "a@example.com", "password": "short"}, "password"),
        ({"email": "a@example.com", "password": "password123"}, "password"),
        ({"email": "a@example.com", "password": PASSWORD, "admin": True}, "admin"),
    ],
)
def test_invalid_fields_are_named(client, body, field):
    response = client.post("/register", json=body)
    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    assert field in {e["field"] for e in response.get_json()["errors"]}


def test_emails_are_unique_case_insensitively_and_trimmed(client, auth_app):
    email = _email()
    assert _register(client, email).status_code == 201
    again = client.post("/register", json={"email": f"  {email.upper()} ", "password": PASSWORD})
    # A padded email is not an email: refused as invalid, or as taken; never a second account.
    assert again.status_code in (409, 422)
    conflict = _register(client, email.upper())
    assert conflict.status_code == 409 and conflict.mimetype == PROBLEM
    login = client.post("/login", json={"email": f" {email.upper()} ", "password": PASSWORD})
    assert login.status_code == 200
    with auth_app.app_context():
        assert (
            db.session.execute(text("SELECT count(*) FROM users WHERE email = :e"), {"e": email}).scalar()
            == 1
        )


def test_unknown_email_and_wrong_password_look_the_same(client, auth_app, monkeypatch):
    email = _email()
    _register(client, email)
    checks = []
    hasher = auth_app.extensions["write_side"].hasher
    real = hasher.verify
    monkeypatch.setattr(hasher, "verify", lambda h, p: checks.append(h) or real(h, p))
    unknown = client.post("/login", json={"email": _email(), "password": PASSWORD})
    wrong = client.post("/login", json={"email": email, "password": "not the password"})
    assert unknown.status_code == wrong.status_code == 401
    strip = lambda r: {k: v for k, v in r.get_json().items() if k != "instance"}  # noqa: E731
    assert strip(unknown) == strip(wrong)
    # Both paths hash once with the same method: no timing difference from skipped work.
    assert len(checks) == 2 and checks[0].split("$")[0] == checks[1].split("$")[0]


def test_five_failures_lock_the_account_and_a_success_resets(client, auth_app):
    email = _email()
    user_id = _register(client, email).get_json()["id"]
    headers = {"User-Agent": "lockout-test"}
    for _ in range(4):
        assert (
            client.post("/login", json={"email": email, "password": "wrong!"}, headers=headers).status_code
            == 401
        )
    assert client.post("/login", json={"email": email, "password": PASSWORD}).status_code == 200
    for _ in range(4):
        assert client.post("/login", json={"email": email, "password": "wrong!"}).status_code == 401
    locked = client.post("/login", json={"email": email, "password": "wrong!"})
    assert locked.status_code == 429
    assert 800 <= int(locked.headers["Retry-After"]) <= 900
    assert locked.mimetype == PROBLEM
    still = client.post("/login", json={"email": email, "password": PASSWORD})
    assert still.status_code == 429  # even the right password, while locked
    types = [e["type"] for e in _events(auth_app, user_id)]
    login = ["UserLoggedIn", "SessionStarted"]
    assert types == ["UserRegistered"] + ["UserLoginFailed"] * 4 + login + ["UserLoginFailed"] * 6
    failures = [e for e in _events(auth_app, user_id) if e["type"] == "UserLoginFailed"]
    assert failures[0]["data"]["user_agent"] == "lockout-test"
    assert failures[0]["data"]["reason"] == "invalid_password"
    assert failures[-1]["data"]["reason"] == "account_locked"
    versions = [e["sequence"] for e in _events(auth_app, user_id)]
    assert versions == list(range(1, 14))


def test_tokens_are_rs256_with_subject_roles_and_id(client, auth_app):
    email = _email()
    user_id = _register(client, email).get_json()["id"]
    body = client.post("/login", json={"email": email, "password": PASSWORD}).get_json()
    assert body["token"] == body["access_token"]
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 900)
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "RS256"
    claims = jwt.decode(
        body["access_token"],
        auth_app.config["JWT_PUBLIC_KEY"],
        algorithms=["RS256"],
        issuer="auth_api",
        audience="query_api",
    )
    assert claims["aud"] == ["auth_api", "query_api"]
    assert claims["sub"] == user_id and claims["roles"] == ["user"] and claims["jti"]
    assert claims["exp"] - claims["iat"] == 900
    refreshed = client.post("/refresh", headers={"Authorization": f"Bearer {body['refresh_token']}"})
    assert refreshed.status_code == 200
    assert (
        jwt.decode(refreshed.get_json()["access_token"], options={"verify_signature": False})["sub"]
        == user_id
    )
    wrong_kind = client.post("/refresh", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert wrong_kind.status_code == 401 and wrong_kind.mimetype == PROBLEM


def test_the_query_side_cannot_mint_tokens(query_app):
    from flask_jwt_extended import create_access_token

    assert query_app.config["JWT_PRIVATE_KEY"] is None
    with query_app.app_context(), pytest.raises(RuntimeError):
        create_access_token(identity="someone")


def test_grant_and_revoke_role_emit_events_and_change_new_tokens(client, auth_app):
    email = _email()
    user_id = _register(client, email).get_json()["id"]
    granted = flask_cli("auth_api", "grant-role", email, "admin")
    assert granted.returncode == 0, granted.stderr
    assert "admin" in granted.stdout
    token = client.post("/login", json={"email": email, "password": PASSWORD}).get_json()["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["roles"] == ["admin", "user"]
    assert flask_cli("auth_api", "grant-role", email, "admin").stdout.startswith(f"{email} roles unchanged")
    revoked = flask_cli("auth_api", "revoke-role", email, "admin")
    assert revoked.returncode == 0, revoked.stderr
    token = client.post("/login", json={"email": email, "password": PASSWORD}).get_json()["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["roles"] == ["user"]
    events = _events(auth_app, user_id)
    assert [e["type"] for e in events] == [
        "UserRegistered",
        "UserRoleGranted",
        "UserLoggedIn",
        "SessionStarted",
        "UserRoleRevoked",
        "UserLoggedIn",
        "SessionStarted",
    ]
    assert events[1]["data"] == {"role": "admin", "roles": ["admin", "user"]}
    unknown = flask_cli("auth_api", "grant-role", _email(), "admin")
    assert unknown.returncode != 0 and "no user" in unknown.stderr


def test_responses_reveal_no_server_internals(client):
    response = client.get("/nope")
    assert response.status_code == 404 and response.mimetype == PROBLEM
    assert "Access-Control-Allow-Origin" not in response.headers
    assert response.headers["X-Request-ID"]
    assert client.put("/register").status_code == 405
