"""Reading a user's events back from the outbox, as a consumer would: personal fields opened."""

from __future__ import annotations

import json

from flask import Flask
from sqlalchemy import text

from auth_api.extensions import db
from event_contract import parse_event
from event_contract.keystore import SqlDataKeys


def outbox_events(auth_app: Flask, user_id: str) -> list[dict]:
    """The user's events in outbox order: CloudEvents documents whose ``data`` is decrypted."""
    with auth_app.app_context():
        rows = db.session.execute(
            text("SELECT payload FROM outbox WHERE user_id = :id ORDER BY id"), {"id": user_id}
        ).all()
        keys = SqlDataKeys(db.engine, auth_app.extensions["write_side"].master)
        events = []
        for row in rows:
            payload = bytes(row.payload)
            events.append({**json.loads(payload), "data": parse_event(payload, keys).data})
        return events
