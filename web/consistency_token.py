"""Consistency tokens: a write's proof that a caller may wait for it on the read side.

The write API signs (with its private key) which user wrote, which event, and the user's
version after it; the read API verifies with the public key, answers only to that user,
and waits until the user's events up to that version are projected. A token is no bearer
credential (it grants no access), only a bounded wait for one's own write.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

AUDIENCE = "query_api:consistency"
ISSUER = "auth_api"


class InvalidConsistencyToken(ValueError):
    pass


@dataclass(frozen=True)
class ConsistencyClaim:
    user_id: uuid.UUID
    event_id: uuid.UUID
    sequence: int


def sign_consistency_token(private_key: Any, claim: ConsistencyClaim, ttl: timedelta) -> str:
    now = datetime.now(UTC)
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(claim.user_id),
        "evt": str(claim.event_id),
        "seq": claim.sequence,
        "iat": now,
        "exp": now + ttl,
    }
    return jwt.encode(payload, private_key, algorithm="RS256")


def verify_consistency_token(public_key: Any, token: str) -> ConsistencyClaim:
    """The claim of a token this service signed and that has not expired, or raise."""
    try:
        payload = jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
        claim = ConsistencyClaim(uuid.UUID(payload["sub"]), uuid.UUID(payload["evt"]), payload["seq"])
    except (jwt.PyJWTError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise InvalidConsistencyToken(str(exc)) from exc
    if not isinstance(claim.sequence, int) or isinstance(claim.sequence, bool) or claim.sequence < 1:
        raise InvalidConsistencyToken("seq must be a positive integer")
    return claim
