"""The running system under test: HTTP clients, process control, server control."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

from settings import ROOT
from tests.support.environment import TEST_ENV
from tests.support.processes import ProcessGroup
from tests.support.waiting import wait_until

PASSWORD = "correct horse battery"


@dataclass
class System:
    processes: ProcessGroup
    http: requests.Session = field(default_factory=requests.Session)

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{TEST_ENV['AUTH_API_PORT']}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{TEST_ENV['QUERY_API_PORT']}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Ready when a registration travels the whole pipeline."""
        user = self.register()
        self.wait_projected(user["id"], timeout=timeout)

    def register(self, email: str | None = None, password: str = PASSWORD, **headers: str) -> dict[str, Any]:
        email = email or f"user-{uuid.uuid4().hex[:12]}@example.com"
        response = self.http.post(
            f"{self.auth_url}/register",
            json={"email": email, "password": password},
            headers=headers,
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return {**response.json(), "email": email}

    def login(self, email: str, password: str = PASSWORD, **headers: str) -> requests.Response:
        return self.http.post(
            f"{self.auth_url}/login", json={"email": email, "password": password}, headers=headers, timeout=30
        )

    def query(self, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.get(f"{self.query_url}{path}", headers=headers, timeout=30, **kwargs)

    def wait_projected(self, user_id: str, timeout: float = 30.0) -> dict[str, Any]:
        from tests.support.read_model import read_user

        return wait_until(lambda: read_user(user_id), timeout=timeout, what=f"user {user_id} projected")

    def server(self, name: str, action: str) -> None:
        """Stop or start a real server through the project's own service script."""
        subprocess.run(["bash", str(ROOT / "services" / f"{name}.sh"), action], check=True, timeout=180)
