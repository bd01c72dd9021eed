"""The account's lifecycle over HTTP on the real auth database: sessions, password, email, deactivation."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import jwt
import pytest
from sqlalchemy import text

from auth_api.extensions import db
from event_contract.crypto import KeyUnavailable
from event_contract.keystore import SqlDataKeys
from tests.support.cli import flask_cli
from tests.support.outbox import outbox_events

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"
PROBLEM = "application/problem+json"


@pytest.fixture
def client(auth_app):
    return auth_app.test_client()


def _email(tag: str = "life") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _account(client, email: str | None = None) -> tuple[str, str]:
    email = email or _email()
    response = client.post("/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.get_json()
    return email, response.get_json()["id"]


def _login(client, email: str, password: str = PASSWORD, agent: str = "pytest/1") -> dict:
    response = client.post(
        "/login", json={"email": email, "password": password}, headers={"User-Agent": agent}
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _refresh(client, tokens: dict):
    return client.post("/refresh", headers=_bearer(tokens["refresh_token"]))


def _events(auth_app, user_id: str) -> list[dict]:
    return outbox_events(auth_app, user_id)


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_json()
    assert response.mimetype == PROBLEM
    return response.get_json()


def test_logout_refuses_the_ended_sessions_refresh_and_access_tokens(client, auth_app):
    email, user_id = _account(client)
    first, second = _login(client, email), _login(client, email)
    answer = client.post("/logout", headers=_bearer(first["access_token"]))
    assert answer.status_code == 200
    body = answer.get_json()
    ended = _events(auth_app, user_id)[-1]
    assert (ended["type"], ended["id"], ended["data"]["reason"]) == (
        "SessionEnded",
        body["event_id"],
        "logout",
    )
    assert body["ended_sessions"] == 1 and body["consistency_token"]
    _problem(_refresh(client, first), 401)
    _problem(client.post("/logout", headers=_bearer(first["access_token"])), 401)
    assert _refresh(client, second).status_code == 200  # the other session lives on


def test_logout_all_ends_every_session(client, auth_app):
    email, user_id = _account(client)
    logins = [_login(client, email) for _ in range(3)]
    body = client.post("/logout-all", headers=_bearer(logins[0]["access_token"])).get_json()
    assert body["ended_sessions"] == 3
    reasons = [e["data"]["reason"] for e in _events(auth_app, user_id) if e["type"] == "SessionEnded"]
    assert reasons == ["logout-all"] * 3
    for tokens in logins:
        _problem(_refresh(client, tokens), 401)


def test_a_password_change_ends_the_other_sessions_but_not_the_current_one(client, auth_app):
    email, user_id = _account(client)
    current, other = _login(client, email), _login(client, email)
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    answer = client.post("/users/me/password", json=change, headers=_bearer(current["access_token"]))
    assert answer.status_code == 200 and answer.get_json()["ended_sessions"] == 1
    changed, ended = _events(auth_app, user_id)[-2:]
    assert changed["type"] == "PasswordChanged" and ended["data"]["reason"] == "password-change"
    assert (
        ended["data"]["session_id"]
        == jwt.decode(other["access_token"], options={"verify_signature": False})["sid"]
    )
    assert _refresh(client, current).status_code == 200
    _problem(_refresh(client, other), 401)
    _problem(client.post("/login", json={"email": email, "password": PASSWORD}), 401)
    _login(client, email, NEW_PASSWORD)


def test_a_wrong_current_password_or_a_weak_new_one_changes_nothing(client, auth_app):
    email, user_id = _account(client)
    tokens = _login(client, email)
    before = len(_events(auth_app, user_id))
    wrong = {"current_password": "not it at all", "new_password": NEW_PASSWORD}
    _problem(client.post("/users/me/password", json=wrong, headers=_bearer(tokens["access_token"])), 403)
    weak = {"current_password": PASSWORD, "new_password": "password1"}
    problem = _problem(
        client.post("/users/me/password", json=weak, headers=_bearer(tokens["access_token"])), 422
    )
    assert problem["errors"][0]["field"] == "new_password"
    _problem(client.post("/users/me/password", json=wrong), 401)  # no token
    assert len(_events(auth_app, user_id)) == before
    _login(client, email)  # the password is unchanged


def _request_code(client, auth_app, tokens: dict, user_id: str, new_email: str) -> str:
    body = {"password": PASSWORD, "new_email": new_email}
    answer = client.post("/users/me/email", json=body, headers=_bearer(tokens["access_token"]))
    assert answer.status_code == 202, answer.get_json()
    requested = _events(auth_app, user_id)[-1]
    assert requested["type"] == "EmailChangeRequested" and requested["id"] == answer.get_json()["event_id"]
    return requested["data"]["code"]


def _confirm(client, tokens: dict, code: str):
    return client.post(
        "/users/me/email/confirm", json={"code": code}, headers=_bearer(tokens["access_token"])
    )


def test_a_confirmed_code_changes_the_email_once(client, auth_app):
    email, user_id = _account(client)
    tokens = _login(client, email)
    new_email = _email("moved")
    code = _request_code(client, auth_app, tokens, user_id, new_email)
    with auth_app.app_context():  # only an HMAC of the code is stored
        stored = db.session.execute(
            text("SELECT code_hash FROM email_changes WHERE user_id = :id"), {"id": user_id}
        )
        assert code.encode() not in bytes(stored.scalar_one())
    answer = _confirm(client, tokens, code)
    assert answer.status_code == 200 and answer.get_json()["email"] == new_email
    changed = _events(auth_app, user_id)[-1]
    assert changed["data"] == {"email": new_email, "previous_email": email}
    _problem(_confirm(client, tokens, code), 409)  # single use
    _problem(client.post("/login", json={"email": email, "password": PASSWORD}), 401)
    _login(client, new_email)
    _, other_id = _account(client, email)  # the old address is free again


def test_a_wrong_or_expired_code_changes_nothing(client, auth_app):
    email, user_id = _account(client)
    tokens = _login(client, email)
    code = _request_code(client, auth_app, tokens, user_id, _email("moved"))
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    before = len(_events(auth_app, user_id))
    problem = _problem(_confirm(client, tokens, wrong), 422)
    assert problem["attempts_left"] == 4
    with auth_app.app_context():
        db.session.execute(
            text("UPDATE email_changes SET expires_at = now() - interval '1 second' WHERE user_id = :id"),
            {"id": user_id},
        )
        db.session.commit()
    _problem(_confirm(client, tokens, code), 409)  # the right code, too late
    assert len(_events(auth_app, user_id)) == before
    _login(client, email)


def test_the_last_wrong_code_ends_the_request(client, auth_app):
    email, user_id = _account(client)
    tokens = _login(client, email)
    code = _request_code(client, auth_app, tokens, user_id, _email("moved"))
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    lefts = [_problem(_confirm(client, tokens, wrong), 422)["attempts_left"] for _ in range(5)]
    assert lefts == [4, 3, 2, 1, 0]
    _problem(_confirm(client, tokens, code), 409)


def test_an_email_change_to_a_taken_address_is_refused(client, auth_app):
    email, user_id = _account(client)
    taken, _ = _account(client)
    tokens = _login(client, email)
    body = {"password": PASSWORD, "new_email": taken.upper()}
    _problem(client.post("/users/me/email", json=body, headers=_bearer(tokens["access_token"])), 409)
    same = {"password": PASSWORD, "new_email": email}
    _problem(client.post("/users/me/email", json=same, headers=_bearer(tokens["access_token"])), 422)
    code = _request_code(client, auth_app, tokens, user_id, _email("race"))
    with auth_app.app_context():  # someone registers the address before the code is confirmed
        pending = db.session.execute(
            text("SELECT new_email FROM email_changes WHERE user_id = :id"), {"id": user_id}
        )
        new_email = pending.scalar_one()
    _account(client, new_email)
    _problem(_confirm(client, tokens, code), 409)


def _admin(client) -> dict:
    email, _ = _account(client, _email("admin"))
    result = flask_cli("auth_api", "grant-role", email, "admin")
    assert result.returncode == 0, result.stderr
    return _login(client, email)


def test_an_admin_deactivates_and_reactivates_over_http(client, auth_app):
    admin = _admin(client)
    email, user_id = _account(client)
    sessions = [_login(client, email), _login(client, email)]
    url = f"/admin/users/{user_id}/deactivate"
    _problem(client.post(url, json={}, headers=_bearer(sessions[0]["access_token"])), 403)  # not an admin
    answer = client.post(url, json={"reason": "abuse report"}, headers=_bearer(admin["access_token"]))
    assert answer.status_code == 200 and answer.get_json()["ended_sessions"] == 2
    types = [e["type"] for e in _events(auth_app, user_id)[-3:]]
    assert types == ["UserDeactivated", "SessionEnded", "SessionEnded"]
    for tokens in sessions:
        _problem(_refresh(client, tokens), 401)
    _problem(client.post("/login", json={"email": email, "password": PASSWORD}), 403)
    _problem(client.post("/login", json={"email": email, "password": "wrong password!"}), 401)
    again = client.post(url, json={}, headers=_bearer(admin["access_token"])).get_json()
    assert again["event_id"] is None and again["consistency_token"] is None  # nothing changed
    back = client.post(f"/admin/users/{user_id}/reactivate", headers=_bearer(admin["access_token"]))
    assert back.status_code == 200 and _events(auth_app, user_id)[-1]["type"] == "UserReactivated"
    _login(client, email)


@pytest.mark.parametrize(
    "path, status",
    [
        (f"/admin/users/{uuid.UUID(int=0)}/deactivate", 404),
        ("/admin/users/not-a-uuid/deactivate", 404),
    ],
)
def test_admin_commands_on_no_user_are_problems(client, path, status):
    admin = _admin(client)
    _problem(client.post(path, json={}, headers=_bearer(admin["access_token"])), status)


def test_the_operator_cli_deactivates_and_reactivates(client, auth_app):
    email, user_id = _account(client)
    tokens = _login(client, email)
    result = flask_cli("auth_api", "deactivate-user", email.upper(), "--reason", "support ticket 7")
    assert result.returncode == 0, result.stderr
    assert user_id in result.stdout and email not in result.stdout and "1 session(s) ended" in result.stdout
    _problem(_refresh(client, tokens), 401)
    _problem(client.post("/login", json={"email": email, "password": PASSWORD}), 403)
    assert flask_cli("auth_api", "reactivate-user", email).returncode == 0
    _login(client, email)
    unknown = flask_cli("auth_api", "deactivate-user", _email("nobody"))
    assert unknown.returncode != 0 and "no user" in unknown.stderr


def test_a_new_device_is_told_apart_from_a_known_one(client, auth_app):
    email, user_id = _account(client)
    _login(client, email, agent="Firefox/1"), _login(client, email, agent="Firefox/1")
    _login(client, email, agent="Chrome/2")
    started = [e["data"]["new_device"] for e in _events(auth_app, user_id) if e["type"] == "SessionStarted"]
    assert started == [True, False, True]
    with auth_app.app_context():  # the agent itself is not kept on the write side
        keys = db.session.execute(
            text("SELECT device_key FROM sessions WHERE user_id = :id"), {"id": user_id}
        )
        assert all(b"Firefox" not in bytes(k) for (k,) in keys)


def _outbox(auth_app, user_id: str) -> list[bytes]:
    with auth_app.app_context():
        rows = db.session.execute(
            text("SELECT payload FROM outbox WHERE user_id = :id ORDER BY id"), {"id": user_id}
        )
        return [bytes(r.payload) for r in rows]


def test_personal_fields_are_ciphertext_in_the_outbox(client, auth_app):
    email, user_id = _account(client)
    _login(client, email, agent="Secret-Agent/7")
    payloads = b"".join(_outbox(auth_app, user_id))
    assert email.encode() not in payloads and b"Secret-Agent" not in payloads and b"127.0.0.1" not in payloads
    assert all(json.loads(p).get("datakeyid") for p in _outbox(auth_app, user_id))


def test_deleting_the_account_erases_it_and_frees_the_email(client, auth_app):
    email, user_id = _account(client)
    tokens, other = _login(client, email), _login(client, email)
    wrong = client.delete(
        "/users/me", json={"password": "not it at all"}, headers=_bearer(tokens["access_token"])
    )
    _problem(wrong, 403)
    answer = client.delete("/users/me", json={"password": PASSWORD}, headers=_bearer(tokens["access_token"]))
    assert answer.status_code == 200 and answer.get_json()["ended_sessions"] == 2
    events = _events(auth_app, user_id)
    assert [e["type"] for e in events[-3:]] == ["SessionEnded", "SessionEnded", "UserDeleted"]
    with auth_app.app_context():
        for table in ("users", "sessions", "email_changes", "data_keys"):
            column = "id" if table == "users" else "user_id"
            count = db.session.execute(
                text(f"SELECT count(*) FROM {table} WHERE {column} = :id"), {"id": user_id}
            )
            assert count.scalar_one() == 0, table
    for session in (tokens, other):
        _problem(_refresh(client, session), 401)
    _problem(client.post("/login", json={"email": email, "password": PASSWORD}), 401)
    _, new_id = _account(client, email)
    assert new_id != user_id


def test_an_admin_deletes_over_http_and_the_operator_from_the_shell(client, auth_app):
    admin = _admin(client)
    email, user_id = _account(client)
    answer = client.delete(f"/admin/users/{user_id}", headers=_bearer(admin["access_token"]))
    assert answer.status_code == 200 and _events(auth_app, user_id)[-1]["data"] == {"by": "admin"}
    _problem(client.delete(f"/admin/users/{user_id}", headers=_bearer(admin["access_token"])), 404)
    email, user_id = _account(client)
    result = flask_cli("auth_api", "delete-user", email, "--yes")
    assert result.returncode == 0, result.stderr
    assert email not in result.stdout and "data key is destroyed" in result.stdout
    _problem(client.post("/login", json={"email": email, "password": PASSWORD}), 401)


def test_rotating_the_master_key_keeps_every_event_readable(settings):
    # In a database of its own: a rotation re-wraps every data key, and the session's running
    # workers, which hold only the configured master key, must keep reading theirs.
    from auth_api import create_app
    from auth_api.key_rotation import rewrap_all
    from event_contract import parse_event
    from event_contract.crypto import MasterKeys
    from tests.support.databases import scratch_database

    quiet = replace(settings, relay_kick=False)
    with scratch_database(
        settings.auth_database_url, lambda config: create_app(quiet, config), "rotation"
    ) as app:
        client = app.test_client()
        emails = [_account(client)[0] for _ in range(3)]
        old = app.extensions["write_side"].master
        rotated = MasterKeys.parse(
            MasterKeys.generate_line("rotated")
            + ","
            + ",".join(f"{k}:{_b64(v)}" for k, v in old.keys.items())
        )
        with app.app_context():
            assert rewrap_all(rotated, batch=2) == 3  # in batches, each its own transaction
            assert rewrap_all(rotated) == 0  # nothing left under an old key
            masters = {m for (m,) in db.session.execute(text("SELECT master_key_id FROM data_keys"))}
            payloads = [
                bytes(p) for (p,) in db.session.execute(text("SELECT payload FROM outbox ORDER BY id"))
            ]
            db.session.rollback()
            assert masters == {"rotated"}
            # Only the new master key is needed now: the old one can be dropped.
            only_new = MasterKeys("rotated", {"rotated": rotated.keys["rotated"]})
            keys = SqlDataKeys(db.engine, only_new)
            assert sorted(parse_event(p, keys).data["email"] for p in payloads) == sorted(emails)
            with pytest.raises(KeyUnavailable):  # and the old one alone opens nothing any more
                SqlDataKeys(db.engine, old).get(parse_event(payloads[0], keys).user_id, _key_id(payloads[0]))


def _key_id(payload: bytes) -> uuid.UUID:
    return uuid.UUID(json.loads(payload)["datakeyid"])


def _b64(key: bytes) -> str:
    import base64

    return base64.b64encode(key).decode()
