"""JWT settings shared by both apps, key loading, and token failures as problem details."""

from __future__ import annotations

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

    @jwt.token_verification_failed_loader
    def _failed(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return _unauthorized("The token was rejected.")


def jwt_config(settings: Settings, *, signing: bool) -> dict[str, Any]:
    """JWT settings of an app; only the write side (``signing``) ever reads the private key.

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
        "JWT_ENCODE_ISSUER": "auth_api",
        "JWT_DECODE_ISSUER": "auth_api",
        "JWT_ERROR_MESSAGE_KEY": "detail",
    }


def read_key(inline: str | None, path: str) -> str | None:
    """A PEM key given inline, else from the file, else None."""
    if inline:
        return inline
    file = Path(path)
    return file.read_text() if file.is_file() else None
