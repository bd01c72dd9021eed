"""The user-events contract: the only place that builds or parses events and Kafka records.

Events travel on the Kafka topic ``user-events`` (a setting) keyed by user id, as
CloudEvents 1.0 JSON envelopes. ``sequence`` is the user's aggregate version; the user id
is ``subject`` on the wire and ``user_id`` in code. New fields are added only as optional
ones (parsers ignore what they do not know); a breaking change is a new type.
"""

from typing import TYPE_CHECKING

from event_contract.delivery import Delivery, KafkaRecord, next_offsets

# The envelope (pydantic, cryptography) loads on first use: the consumers' hand-off only
# moves raw records (Delivery) and never parses one.
_ENVELOPE = {
    "CONTENT_TYPE", "EVENT_TYPES", "SESSION_END_REASONS", "SPEC_VERSION", "Event",
    "InvalidEvent", "new_event", "parse_event", "serialize_event",
}
if TYPE_CHECKING:
    from event_contract.envelope import (
        CONTENT_TYPE,
        EVENT_TYPES,
        SESSION_END_REASONS,
        SPEC_VERSION,
        Event,
        InvalidEvent,
        new_event,
        parse_event,
        serialize_event,
    )


def __getattr__(name: str) -> object:
    if name in _ENVELOPE:
        from event_contract import envelope

        return getattr(envelope, name)
    raise AttributeError(f"module 'event_contract' has no attribute {name!r}")


__all__ = [
    "CONTENT_TYPE",
    "EVENT_TYPES",
    "SESSION_END_REASONS",
    "SPEC_VERSION",
    "Delivery",
    "Event",
    "InvalidEvent",
    "KafkaRecord",
    "new_event",
    "next_offsets",
    "parse_event",
    "serialize_event",
]
