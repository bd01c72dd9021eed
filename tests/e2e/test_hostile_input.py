"""No input gives a 5xx: deep nesting, Unicode digits, parameter names that collide with the
framework's own, hostile Host headers; each against the running gunicorn APIs."""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from tests.support.accounts import signed_up
from tests.support.system import PASSWORD

DEEP = 60_000
# url_for's own keyword arguments, and Flask/werkzeug names, sent as query parameters.
COLLIDING = {
    "endpoint": "static",
    "_method": "POST",
    "_external": "1",
    "_anchor": "x",
    "_scheme": "javascript",
    "values": "1",
    "user_id": "00000000-0000-0000-0000-000000000000",
}


@pytest.fixture(scope="module")
def admin(system):
    return signed_up(system, admin=True)


@pytest.fixture(scope="module")
def twice(system):
    """A user with two logins (so a page of one has a next page), both projected."""
    account = signed_up(system)
    again = system.login(account.email, PASSWORD)
    assert again.status_code == 200
    consistent = {"X-Consistency-Token": again.json()["consistency_token"]}
    assert system.query("/users/me", again.json()["access_token"], headers=consistent).status_code == 200
    return account, again.json()["event_id"]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("path", ["/register", "/login"])
# 60,000 openings fit the 64 KiB body limit; the decoder recurses before it sees the end.
@pytest.mark.parametrize("body", ["[" * DEEP, '{"email":' + "[" * DEEP, '{"a":' * (DEEP // 5)])
def test_json_nested_60000_deep_is_a_400(system, path, body):
    response = requests.post(
        f"{system.auth_url}{path}", data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == 400, response.text
    assert response.json()["title"] == "Malformed JSON"


@pytest.mark.parametrize("part", ["header", "payload"])
def test_a_deeply_nested_token_is_a_401_on_both_apis(system, part):
    deep = b"[" * 3000 + b"]" * 3000  # as deep as an 8 KiB header line allows
    header = b'{"alg":"RS256","typ":"JWT","x":' + deep + b"}" if part == "header" else b'{"alg":"RS256"}'
    payload = b'{"sub":"x","x":' + deep + b"}" if part == "payload" else b'{"sub":"x"}'
    token = f"{_b64(header)}.{_b64(payload)}.{_b64(b'signature')}"
    auth = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{system.query_url}/users/me", headers=auth, timeout=30).status_code == 401
    assert requests.post(f"{system.auth_url}/refresh", headers=auth, timeout=30).status_code == 401


@pytest.mark.parametrize("digits", ["²", "٣", "１０", "1²"])
@pytest.mark.parametrize("path", ["/users", "/users/me/logins"])
def test_unicode_digits_as_limit_are_a_422(system, admin, path, digits):
    response = system.query(path, admin.token, params={"limit": digits})
    assert response.status_code == 422, response.text


def _next(response: requests.Response) -> str:
    match = re.fullmatch(r'<([^>]+)>; rel="next"', response.headers["Link"])
    assert match, response.headers["Link"]
    return match.group(1)


@pytest.mark.parametrize("path", ["/users", "/users/me/logins", "/users/{id}/logins"])
def test_colliding_parameters_and_a_hostile_host_shape_no_link(system, admin, twice, path):
    account, _ = twice
    token = admin.token if path == "/users" else account.token
    target = path.format(id=account.id)
    params = {"limit": "1", **COLLIDING}
    response = system.query(
        target,
        token,
        params=params,
        headers={
            "Host": "evil.example",
            "X-Forwarded-Host": "evil.example",
        },
    )
    assert response.status_code == 200, response.text
    link = _next(response)
    parts = urlsplit(link)
    # Relative: no scheme, no host, this very path; every parameter kept as sent, a cursor added.
    assert (parts.scheme, parts.netloc, parts.path, parts.fragment) == ("", "", target, "")
    query = dict(parse_qsl(parts.query))
    assert {k: query[k] for k in params} == params and query["cursor"]
    assert "evil" not in response.headers["Link"]
    following = system.query(link, token)
    assert following.status_code == 200 and following.json()


@pytest.mark.parametrize("host", ["evil.example", "[::1", "a" * 300, "127.0.0.1:99999", "exa mple"])
def test_hostile_host_headers_are_never_a_5xx(system, admin, host):
    for url in (
        f"{system.query_url}/users?limit=1",
        f"{system.auth_url}/health",
        f"{system.query_url}/health",
    ):
        response = requests.get(
            url, headers={"Host": host, "Authorization": f"Bearer {admin.token}"}, timeout=30
        )
        assert response.status_code < 500, (url, host, response.status_code)
