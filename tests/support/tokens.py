"""Tokens for tests, signed with the test session's private key."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import jwt

from tests.support.environment import TEST_ENV


def mint(
    sub: str, roles: list[str], *, expires_in: int = 900, issuer: str = "auth_api", **claims: object
) -> str:
    now = int(time.time())
    payload = {
        "sub": sub,
        "roles": roles,
        "jti": str(uuid.uuid4()),
        "type": "access",
        "fresh": False,
        "iat": now,
        "nbf": now,
        "exp": now + expires_in,
        "iss": issuer,
        "aud": ["auth_api", "query_api"],
        **claims,
    }
    return jwt.encode(payload, private_key(), algorithm="RS256")


def private_key() -> str:
    """The test session's signing key (PEM)."""
    return Path(TEST_ENV["JWT_PRIVATE_KEY_FILE"]).read_text()
