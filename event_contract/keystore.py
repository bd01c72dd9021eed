"""The data keys as consumers read them: from the write database's ``data_keys``, unwrapped.

Consumers (projection workers, the notifier, the rebuild) hold a read-only grant on that one
table and the master keys. A ``SqlDataKeys`` is made per batch of events and caches what it
unwrapped only for that batch: once a user is erased, the next batch no longer opens their
events, in any process.
"""

from __future__ import annotations

import uuid
from functools import cache
from pathlib import Path

from sqlalchemy import Engine, text

from event_contract.crypto import KeyUnavailable, MasterKeys

_SELECT = text("SELECT user_id, key_id, master_key_id, wrapped FROM data_keys WHERE user_id = ANY(:ids)")


class SqlDataKeys:
    def __init__(self, engine: Engine, master: MasterKeys) -> None:
        self.engine = engine
        self.master = master
        self._rows: dict[uuid.UUID, tuple[uuid.UUID, str, bytes]] = {}
        self._clear: dict[tuple[uuid.UUID, uuid.UUID], bytes | None] = {}

    def prefetch(self, user_ids: set[uuid.UUID]) -> None:
        """Read the keys of ``user_ids`` in one query (users without a key are erased)."""
        missing = [u for u in user_ids if u not in self._rows]
        if not missing:
            return
        with self.engine.connect() as conn:
            for row in conn.execute(_SELECT, {"ids": missing}):
                self._rows[row.user_id] = (row.key_id, row.master_key_id, bytes(row.wrapped))

    def get(self, user_id: uuid.UUID, key_id: uuid.UUID) -> bytes | None:
        if (user_id, key_id) not in self._clear:
            self.prefetch({user_id})
            self._clear[(user_id, key_id)] = self._unwrap(user_id, key_id)
        return self._clear[(user_id, key_id)]

    def _unwrap(self, user_id: uuid.UUID, key_id: uuid.UUID) -> bytes | None:
        row = self._rows.get(user_id)
        if row is None or row[0] != key_id:
            return None  # erased (or a key id this user never had)
        try:
            return self.master.unwrap(user_id, key_id, row[1], row[2])
        except KeyUnavailable:
            raise  # a configuration fault (a master key missing), not an erasure: never blank data


@cache
def master_keys(inline: str | None, path: str) -> MasterKeys:
    """The master keys: ``inline`` (DATA_MASTER_KEYS), else the file ``python -m auth_api.keygen``
    writes. Read once per process."""
    if not inline:
        file = Path(path)
        if not file.is_file():
            hint = f"set DATA_MASTER_KEYS or run python -m auth_api.keygen (writes {file})"
            raise RuntimeError(f"no data master key: {hint}")
        inline = file.read_text()
    return MasterKeys.parse(inline)


def batch_keys(engine: Engine, inline: str | None, path: str) -> SqlDataKeys:
    """A fresh key store for one batch (its cache dies with it)."""
    return SqlDataKeys(engine, master_keys(inline, path))
