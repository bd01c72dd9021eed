"""Direct reads of the test databases, for exact-count assertions."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Engine, create_engine, text

from tests.support.environment import TEST_SETTINGS


@cache
def query_engine() -> Engine:
    # The owner of query_db: tests also empty and seed the read model.
    return create_engine(TEST_SETTINGS.projection_database_url, pool_pre_ping=True)


@cache
def auth_engine() -> Engine:
    return create_engine(TEST_SETTINGS.auth_database_url, pool_pre_ping=True)


def read_user(user_id: str) -> dict[str, Any] | None:
    with query_engine().connect() as conn:
        row = (
            conn.execute(
                text("SELECT * FROM read_model.users WHERE id = :id AND registered_at IS NOT NULL"),
                {"id": user_id},
            )
            .mappings()
            .first()
        )
    return dict(row) if row else None


def scalar(sql: str, engine: Engine | None = None, **params: Any) -> Any:
    with (engine or query_engine()).connect() as conn:
        return conn.execute(text(sql), params).scalar()


def rows(sql: str, engine: Engine | None = None, **params: Any) -> list[dict[str, Any]]:
    with (engine or query_engine()).connect() as conn:
        return [dict(r) for r in conn.execute(text(sql), params).mappings()]
