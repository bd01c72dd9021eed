"""Database URLs from the environment: a URL without a driver runs on psycopg2."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from settings import load_settings, psycopg2_url


@pytest.mark.parametrize(
    "given, expected",
    [
        ("postgresql://u:p@db:5432/auth_db", "postgresql+psycopg2://u:p@db:5432/auth_db"),
        ("postgres://u:p@db/auth_db", "postgresql+psycopg2://u:p@db/auth_db"),
        ("postgresql+psycopg2://u:p@db/auth_db", "postgresql+psycopg2://u:p@db/auth_db"),
    ],
)
def test_a_url_without_a_driver_gets_psycopg2(given: str, expected: str) -> None:
    assert psycopg2_url(given) == expected


def test_an_operators_bare_url_loads_the_installed_driver() -> None:
    settings = load_settings({"AUTH_DATABASE_URL": "postgresql://u:p@db:5432/auth_db"})
    assert settings.auth_database_url == "postgresql+psycopg2://u:p@db:5432/auth_db"
    assert make_url(settings.auth_database_url).get_dialect().driver == "psycopg2"
