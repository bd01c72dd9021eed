"""Master key rotation: re-wrap every data key wrapped by an older master key.

Batches of rows, each in its own short transaction, locked with SKIP LOCKED: a rotation
runs beside live traffic, and an interrupted one is finished by running it again.
"""

from __future__ import annotations

from sqlalchemy import select

from auth_api.extensions import db
from auth_api.models import DataKeyRow
from event_contract.crypto import DataKey, MasterKeys


def rewrap_all(master: MasterKeys, batch: int = 500) -> int:
    """Re-wrap the data keys not under ``master.current``; how many were re-wrapped."""
    moved = 0
    while True:
        rows = (
            db.session.execute(
                select(DataKeyRow)
                .where(DataKeyRow.master_key_id != master.current)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
            .scalars()
            .all()
        )
        if not rows:
            db.session.rollback()
            return moved
        for row in rows:
            secret = master.unwrap(row.user_id, row.key_id, row.master_key_id, row.wrapped)
            row.master_key_id, row.wrapped = master.wrap(row.user_id, DataKey(row.key_id, secret))
        db.session.commit()
        moved += len(rows)
