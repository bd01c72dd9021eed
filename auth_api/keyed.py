"""Keyed digests of the write side's secret values: kept to compare, never to read back.

Each digest is an HMAC-SHA256 under the write side's secret (``WriteSide.failure_secret``)
with a label of its own, so a digest of one kind never equals one of another (the email
counters of ``auth_api.lockout`` use the bare email, which cannot contain a NUL).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid


def _digest(secret: bytes, label: str, *parts: str) -> bytes:
    return hmac.new(secret, "\0".join((label, *parts)).encode(), hashlib.sha256).digest()


def device_key(secret: bytes, user_agent: str | None) -> bytes | None:
    """Which device a session came from: the user agent, keyed (None when there is none)."""
    return _digest(secret, "device", user_agent) if user_agent else None


def new_code(digits: int = 6) -> str:
    """A one-time code of ``digits`` decimal digits from the OS's CSPRNG."""
    return f"{secrets.randbelow(10**digits):0{digits}d}"


def code_hash(secret: bytes, user_id: uuid.UUID, code: str) -> bytes:
    """The stored form of a user's one-time code (bound to the user: no row confirms another's)."""
    return _digest(secret, "email-code", str(user_id), code)


def same_code(secret: bytes, user_id: uuid.UUID, code: str, stored: bytes) -> bool:
    return hmac.compare_digest(code_hash(secret, user_id, code), stored)
