"""Appending events to the outbox, inside the caller's transaction."""

from __future__ import annotations

from sqlalchemy.orm import Session

from auth_api.models import OutboxMessage
from event_contract import Event, serialize_event


def append_to_outbox(session: Session, event: Event, headers: dict[str, str] | None = None) -> None:
    """Stage the event in the same transaction as the state change it records."""
    session.add(
        OutboxMessage(
            event_id=event.id,
            aggregate_id=event.subject,
            event_type=event.type,
            payload=serialize_event(event),
            headers=headers or {},
        )
    )
