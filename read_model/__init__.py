"""The read model's schema: one owner of the ``query_db`` tables, imported by both halves."""

from read_model.tables import (
    READ_MODEL_SCHEMA,
    Base,
    DeadLetter,
    LoginHistoryEntry,
    ProcessedEvent,
    SessionView,
    TimelineEntry,
    UserView,
)

__all__ = [
    "READ_MODEL_SCHEMA",
    "Base",
    "DeadLetter",
    "LoginHistoryEntry",
    "ProcessedEvent",
    "SessionView",
    "TimelineEntry",
    "UserView",
]
