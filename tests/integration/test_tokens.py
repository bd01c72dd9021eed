"""The token matrix: what each API accepts, and refresh tokens that rotate and end."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest

from tests.support.tokens import mint, private_key

PASSWORD = "correct horse battery"


@pytest.fixture
def write(auth_app):
    return auth_app.test_client()


@pytest.fixture
def read(query_app):
    return query_app.test_client()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _signed(payload: dict) -> str:
    return jwt.encode(payload, private_key(), algorithm="RS256")


def _claims(**changes: object) -> dict:
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "roles": ["user"],
        "jti": str(uuid.uuid4()),
        "type": "access",
        "fresh": False,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "iss": "auth_api",
        "aud": ["auth_api", "query_api"],
    }
    for key, value in changes.items():
        if value is None:
            claims.pop(key)
        else:
            claims[key] = value
    return claims


def _unsigned(payload: dict) -> str:
    def part(document: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


def _public_key_as_hmac_secret(payload: dict, query_app) -> str:
    from cryptography.hazmat.primitives import serialization

    pem = query_app.config["JWT_PUBLIC_KEY"].public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT"}
    segments = [
        base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"="),
        base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"="),
    ]
    import hashlib
    import hmac

    signature = hmac.new(pem, b".".join(segments), hashlib.sha256).digest()
    return b".".join([*segments, base64.urlsafe_b64encode(signature).rstrip(b"=")]).decode()


def test_a_well_formed_access_token_is_accepted(read):
    # The baseline every refusal below differs from by one thing (an unknown user: 404).
    assert read.get("/users/me", headers=_bearer(_signed(_claims()))).status_code == 404


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda app: _unsigned(_claims()), id="alg none"),
        pytest.param(lambda app: _public_key_as_hmac_secret(_claims(), app), id="HS256 with the public key"),
        pytest.param(lambda app: _signed(_claims(exp=None)), id="no exp"),
        pytest.param(lambda app: _signed(_claims(exp=int(time.time()) - 5)), id="expired"),
        pytest.param(lambda app: _signed(_claims(iss="someone-else")), id="wrong iss"),
        pytest.param(lambda app: _signed(_claims(iss=None)), id="no iss"),
        pytest.param(lambda app: _signed(_claims(aud="auth_api")), id="audience of the write API only"),
        pytest.param(lambda app: _signed(_claims(aud=None)), id="no aud"),
        pytest.param(lambda app: _signed(_claims(type="refresh", aud="auth_api")), id="a refresh token"),
        pytest.param(lambda app: _signed(_claims(type="refresh")), id="a refresh token for both APIs"),
        pytest.param(lambda app: _signed(_claims(jti=None)), id="no jti"),
        pytest.param(lambda app: _signed(_claims(sub=None)), id="no sub"),
        pytest.param(lambda app: mint(str(uuid.uuid4()), ["user"]) + "A", id="a broken signature"),
    ],
)
def test_the_read_api_refuses_every_forged_or_foreign_token(read, query_app, forge):
    response = read.get("/users/me", headers=_bearer(forge(query_app)))
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer {token} extra", id="a third part"),
        pytest.param("Bearer {token}, Bearer {token}", id="two bearer tokens"),
        pytest.param("bearer {token}", id="lower-case scheme"),
        pytest.param("Token {token}", id="another scheme"),
        pytest.param(" , ", id="only a separator"),
    ],
)
def test_the_read_api_refuses_a_malformed_authorization_field(read, authorization):
    token = _signed(_claims())
    response = read.get("/users/me", headers={"Authorization": authorization.format(token=token)})
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_the_bearer_field_may_follow_other_credentials(read):
    # As flask-jwt-extended reads the field: the one "Bearer <JWT>" among comma-separated ones.
    field = f"Basic dXNlcjpwYXNz, Bearer {_signed(_claims())}"
    assert read.get("/users/me", headers={"Authorization": field}).status_code == 404


def _login(write, email: str) -> dict:
    assert write.post("/register", json={"email": email, "password": PASSWORD}).status_code == 201
    response = write.post("/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200
    return response.get_json()


def _email() -> str:
    return f"tokens-{uuid.uuid4().hex[:10]}@example.com"


def test_an_access_token_is_refused_at_refresh_and_a_refresh_token_at_the_read_api(write, read):
    tokens = _login(write, _email())
    assert write.post("/refresh", headers=_bearer(tokens["access_token"])).status_code == 401
    assert read.get("/users/me", headers=_bearer(tokens["refresh_token"])).status_code == 401
    claims = jwt.decode(tokens["refresh_token"], options={"verify_signature": False})
    assert claims["aud"] == "auth_api" and claims["type"] == "refresh" and claims["sid"]


def test_refresh_tokens_rotate_and_a_reused_one_ends_its_session(write, auth_app):
    tokens = _login(write, _email())
    first = write.post("/refresh", headers=_bearer(tokens["refresh_token"]))
    assert first.status_code == 200
    rotated = first.get_json()["refresh_token"]
    assert rotated != tokens["refresh_token"]
    second = write.post("/refresh", headers=_bearer(rotated))
    assert second.status_code == 200
    newest = second.get_json()["refresh_token"]
    # The first token comes back (stolen, say): the whole family ends, the newest token too.
    reused = write.post("/refresh", headers=_bearer(tokens["refresh_token"]))
    assert reused.status_code == 401 and "already used" in reused.get_json()["detail"]
    assert write.post("/refresh", headers=_bearer(newest)).status_code == 401
    # Another login is another session, untouched.
    again = write.post("/login", json={"email": _user_email(tokens), "password": PASSWORD}).get_json()
    assert write.post("/refresh", headers=_bearer(again["refresh_token"])).status_code == 200
    session_id = jwt.decode(tokens["refresh_token"], options={"verify_signature": False})["sid"]
    from sqlalchemy import text

    from auth_api.extensions import db

    with auth_app.app_context():
        ended = db.session.execute(
            text("SELECT end_reason FROM sessions WHERE id = :id"), {"id": session_id}
        ).scalar()
        event = db.session.execute(
            text(
                "SELECT payload FROM outbox WHERE event_type = 'SessionEnded'"
                " AND convert_from(payload, 'UTF8') LIKE :sid"
            ),
            {"sid": f"%{session_id}%"},
        ).scalar()
    assert ended == "reuse-detected" and event is not None


def test_a_locked_account_cannot_refresh(write):
    email = _email()
    tokens = _login(write, email)
    for _ in range(5):
        write.post("/login", json={"email": email, "password": "not the password"})
    refused = write.post("/refresh", headers=_bearer(tokens["refresh_token"]))
    assert refused.status_code == 401 and "locked" in refused.get_json()["detail"]


def _user_email(tokens: dict) -> str:
    return jwt.decode(tokens["access_token"], options={"verify_signature": False})["email"]
