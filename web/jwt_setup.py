"""JWT settings shared by both apps, key loading, and token failures as problem details."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from flask import Response
from flask_jwt_extended import JWTManager

from settings import Settings
from web.problems import problem_response

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def install_jwt_problems(jwt: JWTManager) -> None:
    def _unauthorized(detail: str) -> Response:
        return problem_response(401, "Unauthorized", detail, _CHALLENGE)

    @jwt.unauthorized_loader
    def _missing(reason: str) -> Response:
        return _unauthorized("A bearer token is required.")

    @jwt.invalid_token_loader
    def _invalid(reason: str) -> Response:
        return _unauthorized("The token is invalid.")

    @jwt.expired_token_loader
    def _expired(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return _unauthorized("The token has expired.")

    @jwt.revoked_token_loader
    def _revoked(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return _unauthorized("The token has been revoked.")

    @jwt.token_verification_loader
    def _complete(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
        return has_required_claims(payload)

    @jwt.token_verification_failed_loader
    def _failed(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return _unauthorized("The token was rejected.")


# Audiences: access tokens are for both APIs; refresh tokens only for the write API's
# /refresh (the read API refuses them by audience, and by type).
WRITE_API = "auth_api"
READ_API = "query_api"
ACCESS_AUDIENCE = [WRITE_API, READ_API]
REQUIRED_CLAIMS = ("exp", "iat", "jti", "sub", "type", "aud", "iss")


def has_required_claims(payload: dict[str, Any]) -> bool:
    # PyJWT checks exp/aud/iss only when present, and flask-jwt-extended fills a missing jti
    # with None: a token without them is refused.
    return all(payload.get(claim) is not None for claim in REQUIRED_CLAIMS)


def jwt_config(settings: Settings, *, signing: bool, audience: str) -> dict[str, Any]:
    """JWT settings of an app; only the write side (``signing``) ever reads the private key.
    ``audience`` is the app's own name: a token not meant for it is refused.

    The PEM texts are parsed once here: PyJWT given a PEM string parses (and validates) the
    RSA key on every token, about 50 ms each, which made a login cost over 100 ms.
    """
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

    private_key = (
        read_key(settings.jwt_private_key_pem, settings.jwt_private_key_file) if signing else None
    )
    public_key = read_key(settings.jwt_public_key_pem, settings.jwt_public_key_file)
    return {
        "JWT_ALGORITHM": "RS256",
        "JWT_DECODE_ALGORITHMS": ["RS256"],
        "JWT_PRIVATE_KEY": load_pem_private_key(private_key.encode(), None) if private_key else None,
        "JWT_PUBLIC_KEY": load_pem_public_key(public_key.encode()) if public_key else None,
        "JWT_TOKEN_LOCATION": ["headers"],
        "JWT_ACCESS_TOKEN_EXPIRES": settings.jwt_access_ttl,
        "JWT_REFRESH_TOKEN_EXPIRES": settings.jwt_refresh_ttl,
        "JWT_ENCODE_ISSUER": WRITE_API,
        "JWT_DECODE_ISSUER": WRITE_API,
        "JWT_ENCODE_AUDIENCE": ACCESS_AUDIENCE,  # refresh tokens override it with the write API
        "JWT_DECODE_AUDIENCE": audience,
        "JWT_ERROR_MESSAGE_KEY": "detail",
    }


def read_key(inline: str | None, path: str) -> str | None:
    """A PEM key given inline, else from the file, else None."""
    if inline:
        return inline
    file = Path(path)
    return file.read_text() if file.is_file() else None


class VerifiedTokenCache(JWTManager):
    """A JWTManager that verifies each distinct token once per process, then reuses its claims.

    Decoding a token costs about 1 ms of Python here (PyJWT 2.15 checks every character of each
    segment in a generator, and flask-jwt-extended parses a token three times), more than the
    rest of a read. A client sends the same access token for its whole lifetime, so the claims
    of a verified token are kept (bounded, oldest out first) and given again for the same exact
    string while it has not expired; an expired or unknown token goes through full
    verification. Nothing weaker is accepted: the signature was checked on these very bytes,
    and the checks after decoding (required claims, type, roles) run on every request.
    """

    MAX_ENTRIES = 2048

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._verified: dict[str, dict[str, Any]] = {}
        self._verified_lock = threading.Lock()

    def _decode_jwt_from_config(
        self, encoded_token: str, csrf_value: Any = None, allow_expired: bool = False
    ) -> dict:
        if csrf_value or allow_expired:
            return super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        claims = self._verified.get(encoded_token)
        if claims is not None and isinstance(claims.get("exp"), int | float) and claims["exp"] > time.time():
            return dict(claims)
        claims = super()._decode_jwt_from_config(encoded_token)
        if isinstance(claims.get("exp"), int | float):
            with self._verified_lock:
                if len(self._verified) >= self.MAX_ENTRIES:
                    self._verified.pop(next(iter(self._verified)))
                self._verified[encoded_token] = dict(claims)
        return claims
