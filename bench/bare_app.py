"""A bare Flask JSON endpoint, the yardstick of the read API benchmark.

Served exactly as the read API is (``gunicorn -c gunicorn.conf.py`` with the read API's
processes and threads), it answers ``GET /users/me`` with a fixed user document: no token,
no database, no middleware. The read API's requests/s over this one's is the share of the
framework's own ceiling that the real work leaves.
"""

from __future__ import annotations

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

app = Flask(__name__)
USER = {
    "id": "00000000-0000-4000-8000-000000000000",
    "email": "reader-1@example.com",
    "roles": ["user"],
    "registered_at": "2026-01-01T00:00:00+00:00",
    "last_login_at": "2026-01-01T00:00:00+00:00",
    "login_count": 3,
    "failed_login_count": 0,
    "version": 4,
}


@app.get("/users/me")
def me() -> ResponseReturnValue:
    return jsonify(USER)
