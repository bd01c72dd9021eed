"""The notifier under test: its database, the session's mail catcher and what it caught."""

from __future__ import annotations

import subprocess
import uuid
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import create_engine, text

from services.mail_catcher import CaughtMail, caught_mail
from settings import ROOT
from tests.support.environment import TEST_ENV, TEST_SETTINGS, child_env

VENV_BIN = ROOT / ".venv" / "bin"
NOTIFY_ALEMBIC = ROOT / "migrations" / "notify" / "alembic.ini"
MAIL_DIR = Path(TEST_ENV["MAIL_DIR"])


def migrate_notify_db(env: Mapping[str, str]) -> None:
    """notify_db's migrations as its owner role (what `make migrate` runs)."""
    subprocess.run(
        [str(VENV_BIN / "alembic"), "-c", str(NOTIFY_ALEMBIC), "upgrade", "head"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        check=True,
        capture_output=True,
        timeout=120,
    )


def mail_catcher(action: str) -> None:
    """services/mailcatcher.sh start|stop for the session's port and Maildir."""
    subprocess.run(
        ["bash", str(ROOT / "services" / "mailcatcher.sh"), action],
        env=child_env(),
        check=True,
        capture_output=True,
        timeout=60,
    )


def inbox(to: str | None = None) -> list[CaughtMail]:
    """What the session's catcher holds (to one address, if given)."""
    mails = caught_mail(MAIL_DIR)
    return [m for m in mails if to is None or m.to == to]


def message_ids(to: str | None = None) -> Counter[str]:
    return Counter(m.message_id for m in inbox(to))


def mail_id(event_id: uuid.UUID | str, kind: str) -> str:
    """The Message-ID the notifier gives the mail of ``kind`` for an event."""
    return f"<{event_id}.{kind}@cqrs.localhost>"


def ledger_rows(event_ids: list[uuid.UUID]) -> dict[tuple[str, str], str]:
    """(event id, kind) -> outcome in notify_db for those events."""
    engine = create_engine(TEST_SETTINGS.notifier_database_url)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT event_id, kind, outcome FROM sent_mail WHERE event_id = ANY(CAST(:ids AS uuid[]))"
                ),
                {"ids": [str(e) for e in event_ids]},
            ).all()
    finally:
        engine.dispose()
    return {(str(r.event_id), r.kind): r.outcome for r in found}
