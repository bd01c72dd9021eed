"""What the notifier mailed: one row per (event id, kind), in ``notify_db``.

The row is the claim. A worker inserts it, sends the mail and commits, all in one
transaction: a second delivery of the same event (redelivery, a replay, a second worker
at the same moment, which waits on the first's row lock) finds the row and sends nothing.
A worker that dies before its commit leaves no row, so the mail is sent again later:
nothing is lost, and the one crash window (after the SMTP server took the mail, before the
commit) gives a second copy with the same Message-ID. No address or code is stored here.
"""

from __future__ import annotations

import uuid

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID, insert

metadata = MetaData()

SENT = "sent"
EXPIRED = "expired"  # a verification code already expired when its event was processed
REJECTED = "rejected"  # the SMTP server refused it for good (5xx): retrying would not help

sent_mail = Table(
    "sent_mail",
    metadata,
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("kind", Text, nullable=False),
    Column("user_id", UUID(as_uuid=True), nullable=False),
    Column("outcome", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("event_id", "kind", name="sent_mail_pkey"),
    Index("sent_mail_user_id", "user_id"),  # a user's mails, for support and erasure
)


def claim(conn: Connection, event_id: uuid.UUID, kind: str, user_id: uuid.UUID, outcome: str = SENT) -> bool:
    """Claim the mail in the caller's transaction; False if it was claimed before.

    A claim by a transaction still open elsewhere blocks this one until that one ends
    (the primary key's uniqueness check), bounded by ``lock_timeout``."""
    inserted = conn.execute(
        insert(sent_mail)
        .values(event_id=event_id, kind=kind, user_id=user_id, outcome=outcome)
        .on_conflict_do_nothing(index_elements=["event_id", "kind"])
        .returning(sent_mail.c.event_id)
    ).first()
    return inserted is not None


def set_outcome(conn: Connection, event_id: uuid.UUID, kind: str, outcome: str) -> None:
    conn.execute(
        sent_mail.update()
        .where(sent_mail.c.event_id == event_id, sent_mail.c.kind == kind)
        .values(outcome=outcome, recorded_at=func.now())
    )


def bound_transaction(conn: Connection, seconds: float) -> None:
    """A frozen worker must not hold its claim forever: PostgreSQL ends its session (and the
    claim with it) after ``seconds`` idle in the transaction; a wait for another's claim gives up too."""
    millis = str(max(1000, int(seconds * 1000)))
    conn.execute(text("SELECT set_config('idle_in_transaction_session_timeout', :ms, true)"), {"ms": millis})
    conn.execute(text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": millis})
