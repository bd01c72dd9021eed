"""Keyset pagination: opaque cursors and the ``limit`` parameter."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlencode

from flask import request

from web.problems import Problem

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def read_limit() -> int:
    raw = request.args.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    # isascii: "²" or "٣" are digits to str.isdigit but not to int().
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise Problem(422, "Unprocessable Content", f"limit must be an integer from 1 to {MAX_LIMIT}.")
    return int(raw)


def encode_cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode("|".join(parts).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, count: int) -> list[str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = base64.urlsafe_b64decode(padded.encode("ascii")).decode().split("|")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise Problem(422, "Unprocessable Content", "Invalid cursor.") from exc
    if len(parts) != count:
        raise Problem(422, "Unprocessable Content", "Invalid cursor.")
    return parts


def next_link(cursor: str) -> str:
    """The ``Link`` value of the next page: this request's path and query, the cursor replaced.

    Relative (RFC 8288 resolves it against the request URL), so neither the client's Host
    header nor url_for's reserved argument names (``_external``, ``_scheme``, ``endpoint``...),
    sent as query parameters, can shape it.
    """
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "cursor"]
    target = request.script_root + request.path + "?" + urlencode([*args, ("cursor", cursor)])
    return f'<{target}>; rel="next"'
