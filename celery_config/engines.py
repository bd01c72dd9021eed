"""Database engines of worker processes: one per database URL and process."""

from __future__ import annotations

import os
from functools import cache

from sqlalchemy import Engine, create_engine


def worker_engine(url: str) -> Engine:
    """The engine of this process for ``url``, created after the pool's fork, never shared."""
    return _engine(url, os.getpid())


@cache
def _engine(url: str, _pid: int) -> Engine:
    # A dead database must fail a task in seconds (then it is retried), not hang it; TCP
    # keepalives make a connection whose peer vanished fail rather than wait forever.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=2,
        connect_args={
            "connect_timeout": 3,
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
        },
    )
