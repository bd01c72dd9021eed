"""The read API over HTTP: access rules, pagination, read-your-writes, problem details."""

from __future__ import annotations

import re
import time
import uuid
from datetime import timedelta

import pytest

from tests.support.accounts import signed_up
from tests.support.tokens import mint, private_key
from tests.support.waiting import wait_until
from web.consistency_token import ConsistencyClaim, sign_consistency_token

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def admin(system):
    return signed_up(system, admin=True)


@pytest.fixture(scope="module")
def alice(system):
    return signed_up(system)


def consistent(account):
    return {"X-Consistency-Token": account.consistency_token}


def _waiting_for_nothing(account) -> dict[str, str]:
    """A consistency token for a write of the account that will never be projected."""
    claim = ConsistencyClaim(uuid.UUID(account.id), uuid.uuid4(), 10**6)
    return {"X-Consistency-Token": sign_consistency_token(private_key(), claim, timedelta(minutes=5))}


def test_read_your_writes_without_polling(system, alice):
    # The login's consistency token: the answer waits until the login is projected.
    me = system.query("/users/me", alice.token, headers=consistent(alice))
    assert me.status_code == 200
    assert me.json()["id"] == alice.id and me.json()["login_count"] == 1
    logins = system.query("/users/me/logins", alice.token, headers=consistent(alice))
    assert [e["event_id"] for e in logins.json()] == [alice.event_id]


def test_a_write_that_is_not_projected_gives_503_after_the_bounded_wait(system, alice):
    started = time.monotonic()
    response = system.query("/users/me", alice.token, headers=_waiting_for_nothing(alice))
    assert response.status_code == 503 and response.headers["Content-Type"] == PROBLEM
    assert response.headers["Retry-After"] == "1"
    assert time.monotonic() - started >= 1.9  # it did wait (the bound is 2 s)


def test_only_the_writer_may_wait_and_only_with_a_token_of_the_write_api(system, alice, admin):
    for token in ("not-a-token", alice.event_id, mint(alice.id, ["user"])):  # an access token is no proof
        started = time.monotonic()
        bad = system.query("/users/me", alice.token, headers={"X-Consistency-Token": token})
        assert bad.status_code == 422 and time.monotonic() - started < 1.0
    started = time.monotonic()
    theirs = system.query("/users/me", admin.token, headers=_waiting_for_nothing(alice))
    assert theirs.status_code == 403 and time.monotonic() - started < 1.0  # refused before any wait
    # Authorization before the wait: a non-admin is refused /users at once, token or not.
    started = time.monotonic()
    listing = system.query("/users", alice.token, headers=_waiting_for_nothing(alice))
    assert listing.status_code == 403 and time.monotonic() - started < 1.0


def test_a_caller_waits_for_one_write_at_a_time(system, alice):
    """While one of a caller's reads waits, another is refused at once, whichever API process
    it reaches: waits are bounded per caller."""
    import threading

    stop = threading.Event()
    waited: list[int] = []

    def keep_one_waiting() -> None:
        while not stop.is_set():
            answer = system.query("/users/me", alice.token, headers=_waiting_for_nothing(alice))
            waited.append(answer.status_code)

    waiter = threading.Thread(target=keep_one_waiting)
    waiter.start()
    try:
        [refused] = wait_until(
            lambda: _immediate_503(system, alice), timeout=20, what="a second wait refused at once"
        )
        assert "already waiting" in refused.json()["detail"]
    finally:
        stop.set()
        waiter.join(10)
    assert waited and set(waited) <= {503}


def _immediate_503(system, account):
    started = time.monotonic()
    answer = system.query("/users/me", account.token, headers=_waiting_for_nothing(account))
    # Well under the 2 s a wait lasts.
    return [answer] if answer.status_code == 503 and time.monotonic() - started < 1.0 else None


def test_users_list_is_for_admins_only(system, admin, alice):
    assert system.query("/users", alice.token).status_code == 403
    # Filtered by email: the first page of an unfiltered list holds whichever ids sort first, and
    # other tests leave users behind in the same database.
    response = system.query(f"/users?email={admin.email}", admin.token, headers=consistent(admin))
    assert response.status_code == 200
    assert [u["id"] for u in response.json()] == [admin.id]


def test_users_list_pages_with_link_headers_and_filters_by_email(system, admin, alice):
    others = [signed_up(system) for _ in range(3)]
    for account in others:
        assert system.query("/users/me", account.token, headers=consistent(account)).status_code == 200
    seen, url, pages = [], "/users?limit=2", 0
    while url:
        response = system.query(url, admin.token)
        assert response.status_code == 200
        assert len(response.json()) <= 2
        seen.extend(u["id"] for u in response.json())
        link = response.headers.get("Link")
        url = re.match(r'<([^>]+)>; rel="next"', link).group(1) if link else None
        pages += 1
    assert len(seen) == len(set(seen)) and seen == sorted(seen)
    assert {a.id for a in others} | {alice.id, admin.id} <= set(seen)
    assert pages >= 3
    [found] = system.query(f"/users?email={alice.email.upper()}", admin.token).json()
    assert found["id"] == alice.id
    assert system.query("/users?email=nobody@example.com", admin.token).json() == []


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=abc", "cursor=%%%", "cursor=abc"])
def test_bad_parameters_are_422(system, admin, query):
    response = system.query(f"/users?{query}", admin.token)
    assert response.status_code == 422 and response.headers["Content-Type"] == PROBLEM


def test_a_user_reads_itself_and_an_admin_reads_anyone(system, admin, alice):
    bob = signed_up(system)
    system.query("/users/me", bob.token, headers=consistent(bob))
    assert system.query(f"/users/{alice.id}", alice.token).status_code == 200
    assert system.query(f"/users/{bob.id}", alice.token).status_code == 403
    assert system.query(f"/users/{bob.id}/logins", alice.token).status_code == 403
    assert system.query(f"/users/{bob.id}", admin.token).json()["email"] == bob.email
    assert system.query(f"/users/{bob.id}/logins", admin.token).status_code == 200
    assert system.query(f"/users/{uuid.uuid4()}", admin.token).status_code == 404
    assert system.query("/users/not-a-uuid", admin.token).status_code == 422


def test_login_history_is_newest_first_and_paginated(system, alice):
    for n in range(3):
        system.login(alice.email, "wrong password", **{"User-Agent": f"agent-{n}"})
    last = system.login(alice.email, **{"User-Agent": "agent-ok"}).json()
    history = system.query(
        "/users/me/logins?limit=2",
        last["access_token"],
        headers={"X-Consistency-Token": last["consistency_token"]},
    )
    assert history.status_code == 200
    first_page = history.json()
    assert [e["user_agent"] for e in first_page] == ["agent-ok", "agent-2"]
    assert [e["outcome"] for e in first_page] == ["success", "failure"]
    assert first_page[1]["reason"] == "invalid_password"
    rest = system.query(re.match(r"<([^>]+)>", history.headers["Link"]).group(1), last["access_token"])
    assert [e["user_agent"] for e in rest.json()][:2] == ["agent-1", "agent-0"]


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer not.a.token", "Basic dXNlcjpwYXNz"],
)
def test_missing_or_bad_tokens_are_401(system, header):
    headers = {"Authorization": header} if header else {}
    response = system.query("/users/me", headers=headers)
    assert response.status_code == 401 and response.headers["Content-Type"] == PROBLEM
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_expired_foreign_or_wrong_issuer_tokens_are_401(system, alice):
    assert system.query("/users/me", mint(alice.id, ["user"], expires_in=-60)).status_code == 401
    assert system.query("/users/me", mint(alice.id, ["user"], issuer="someone-else")).status_code == 401
    import jwt

    forged = jwt.encode({"sub": alice.id, "roles": ["admin"], "type": "access"}, "s" * 64, algorithm="HS256")
    assert system.query("/users", forged).status_code == 401


def test_a_valid_token_for_an_unprojected_user_is_404(system):
    assert system.query("/users/me", mint(str(uuid.uuid4()), ["user"])).status_code == 404


def test_openapi_documents_and_docs_pages(system):
    for base in (system.auth_url, system.query_url):
        document = system.http.get(f"{base}/openapi.json", timeout=10).json()
        assert document["openapi"].startswith("3.")
        page = system.http.get(f"{base}/docs", timeout=10)
        assert page.status_code == 200 and "swagger-ui" in page.text
        assert system.http.get(f"{base}/docs/swagger-ui-bundle.js", timeout=10).status_code == 200
    auth_paths = system.http.get(f"{system.auth_url}/openapi.json", timeout=10).json()["paths"]
    assert {"/register", "/login", "/refresh", "/health"} <= set(auth_paths)


def test_no_server_version_and_no_cors_by_default(system):
    response = system.http.get(
        f"{system.query_url}/health", headers={"Origin": "https://evil.example"}, timeout=10
    )
    assert not re.search(r"\d", response.headers.get("Server", ""))
    assert "Access-Control-Allow-Origin" not in response.headers


def test_wait_until_is_not_needed_by_clients_but_projection_still_converges(system, alice):
    # Without the header the read model is eventually consistent: it converges shortly.
    login = system.login(alice.email).json()
    wait_until(
        lambda: any(
            e["event_id"] == login["event_id"] for e in system.query("/users/me/logins", alice.token).json()
        ),
        timeout=20,
        what="the login in the history",
    )


def test_a_nul_byte_in_a_filter_is_refused_not_a_500(system, admin):
    assert system.query("/users?email=a%00b@example.com", admin.token).status_code == 422


def test_reads_survive_the_server_dropping_every_pooled_connection(system, alice):
    """The read API runs without a pre-ping: a read that meets a dropped connection is run
    again on a fresh one, so clients see no error (and no 503) after a backend restart."""
    from sqlalchemy.engine import make_url

    from tests.support.environment import TEST_SETTINGS
    from tests.support.faults import query_database_name, superuser_sql

    for _ in range(8):  # connections into every worker's pool
        assert system.query("/users/me", alice.token, headers=consistent(alice)).status_code == 200
    reader = make_url(TEST_SETTINGS.query_database_url).username
    killed = superuser_sql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        f" WHERE datname = '{query_database_name()}' AND usename = '{reader}' AND pid <> pg_backend_pid()"
    )
    assert int(killed) >= 1
    answers = [system.query("/users/me", alice.token).status_code for _ in range(16)]
    assert answers == [200] * 16
