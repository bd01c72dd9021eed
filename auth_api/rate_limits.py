"""Rate limits of the unauthenticated endpoints (``/register``, ``/login``, ``/refresh``).

Flask-Limiter counts per client address and, where a body names one, per normalised email,
in a store every API process shares (Redis, ``RATE_LIMIT_STORAGE_URL``), so two gunicorn
workers or two hosts count together. A refused request is a 429 problem with ``Retry-After``;
every limited answer carries the IETF ``RateLimit`` and ``RateLimit-Policy`` fields
(draft-ietf-httpapi-ratelimit-headers). Counter keys are HMACs of the address or email, so
neither the store nor Flask-Limiter's log lines hold them in clear. If the store is down the
limits fail open: the request is served and a warning is logged (a 5xx would turn an
outage of a side store into an outage of login).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from auth_api.emails import normalize_email
from settings import Settings
from web.problems import problem_response

log = logging.getLogger(__name__)

ADDRESS_POLICY = "address"
EMAIL_POLICY = "email"


def _digest(kind: str, value: str) -> str:
    secret: bytes = current_app.extensions["write_side"].failure_secret
    return kind + ":" + hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()[:32]


def address_key() -> str:
    return _digest(ADDRESS_POLICY, get_remote_address() or "unknown")


def _body_email() -> str | None:
    """The normalised email a JSON body names, or None (not JSON, too large, no email...)."""
    if "rate_limit_email" not in g:
        email = None
        try:
            document = json.loads(request.get_data(cache=True))  # the view reads the cached bytes
            if isinstance(document, dict) and isinstance(document.get("email"), str):
                email = normalize_email(document["email"][:320])
        except Exception:  # any unreadable body: the view answers it with a 4xx
            email = None
        g.rate_limit_email = email
    return g.rate_limit_email


def email_key() -> str:
    return _digest(EMAIL_POLICY, _body_email() or "")


def _no_email() -> bool:
    return _body_email() is None


limiter = Limiter(
    key_func=address_key,
    headers_enabled=False,  # the IETF fields are written below, not the X-RateLimit-* ones
    swallow_errors=True,  # fail open when the store is unreachable
    strategy="sliding-window-counter",
)


def _setting(name: str) -> Callable[[], str]:
    return lambda: current_app.config[name]


per_address = limiter.limit(_setting("RATE_LIMIT_PER_ADDRESS"), key_func=address_key)
per_email = limiter.limit(_setting("RATE_LIMIT_PER_EMAIL"), key_func=email_key, exempt_when=_no_email)


def install_rate_limits(app: Flask, settings: Settings) -> None:
    app.config.update(
        RATELIMIT_STORAGE_URI=settings.rate_limit_storage_url,
        RATELIMIT_KEY_PREFIX=settings.rate_limit_key_prefix,
        # A store that hangs must not hang logins: give up within half a second, fail open.
        RATELIMIT_STORAGE_OPTIONS=(
            {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
            if settings.rate_limit_storage_url.startswith("redis")
            else {}
        ),
        RATE_LIMIT_PER_ADDRESS=settings.rate_limit_per_address,
        RATE_LIMIT_PER_EMAIL=settings.rate_limit_per_email,
    )
    limiter.init_app(app)
    logging.getLogger("flask-limiter").addFilter(_StoreDownAsWarning())

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded) -> Response:
        breached = limiter.current_limit
        retry_after = max(1, math.ceil(breached.reset_at - time.time())) if breached else 60
        return problem_response(
            429,
            "Too Many Requests",
            "Too many requests; try again later.",
            {"Retry-After": str(retry_after)},
            retry_after=retry_after,
        )

    @app.after_request
    def _ratelimit_fields(response: Response) -> Response:
        try:
            limits = limiter.current_limits
            if not limits:
                return response
            now = time.time()
            policies, states = [], []
            for current in limits:
                name = _policy_name(current)
                window = current.limit.get_expiry()
                policies.append(f'"{name}";q={current.limit.amount};w={window}')
                remaining = 0 if current.breached else max(0, current.remaining)
                reset = max(0, math.ceil(current.reset_at - now))
                states.append(f'"{name}";r={remaining};t={reset}')
            response.headers["RateLimit-Policy"] = ", ".join(dict.fromkeys(policies))
            response.headers["RateLimit"] = ", ".join(dict.fromkeys(states))
        except Exception as exc:  # the store went away: answer without the fields
            log.warning("rate limit fields left out: %s", type(exc).__name__)
        return response


def _policy_name(current: Any) -> str:
    """``address`` or ``email`` plus the window, e.g. ``address-60s``: the key tells which."""
    kind = EMAIL_POLICY if EMAIL_POLICY + ":" in current.key else ADDRESS_POLICY
    return f"{kind}-{current.limit.get_expiry()}s"


class _StoreDownAsWarning(logging.Filter):
    """Flask-Limiter logs a swallowed store error with its traceback at ERROR, on every
    request; one WARNING line without the traceback says the same."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and "Swallowing error" in record.getMessage():
            reason = type(record.exc_info[1]).__name__ if record.exc_info and record.exc_info[1] else "error"
            record.msg, record.args = "rate limit store unreachable (%s): limits fail open", (reason,)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True
