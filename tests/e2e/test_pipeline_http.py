"""Over HTTP against gunicorn-served apps, with relay, beat, projector and worker processes."""

from __future__ import annotations

from tests.support.waiting import wait_until


def test_register_and_login_reach_the_read_side(system):
    user = system.register(**{"User-Agent": "e2e-client/1.0"})
    assert user["message"] == "User registered successfully"
    login = system.login(user["email"], **{"User-Agent": "e2e-client/1.0"})
    assert login.status_code == 200
    token = login.json()["token"]
    assert token.count(".") == 2

    def projected_with_login():
        response = system.query(f"/users/{user['id']}", token=token)
        if response.status_code == 200 and response.json()["login_count"] == 1:
            return response.json()
        return None

    projected = wait_until(projected_with_login, timeout=20, what="user and login projected")
    assert projected["email"] == user["email"]
    assert projected["roles"] == ["user"]
    assert projected["version"] == 3  # UserRegistered, UserLoggedIn, SessionStarted

    history = system.query(f"/users/{user['id']}/logins", token=token)
    assert history.status_code == 200
    [entry] = history.json()
    assert entry["outcome"] == "success"
    assert entry["user_agent"] == "e2e-client/1.0"
    assert entry["event_id"] == login.json()["event_id"]


def test_health_of_both_apis(system):
    for base in (system.auth_url, system.query_url):
        response = system.http.get(f"{base}/health", timeout=10)
        assert response.status_code == 200
        assert response.json() == {"status": "OK"}
