"""The notification task (queue ``notifications``): a batch of events, each mail claimed once.

The task takes what the projector hands over (raw Kafka records as ``Delivery`` dicts),
parses them here and mails what ``mails.mails_for`` asks for. Each mail is claimed, sent
and recorded in one ``notify_db`` transaction (``ledger``). A transient failure (SMTP
server away, a 4xx reply, the database away) retries the whole batch with backoff: the
mails already sent are claimed and skipped. Logs name events and kinds, never an address
or a code.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from celery import Task, shared_task
from sqlalchemy import Engine

from celery_config.app import NOTIFY_TASK
from celery_config.engines import worker_engine
from event_contract import Delivery, InvalidEvent, parse_event
from event_contract.crypto import DataKeys
from event_contract.keystore import batch_keys
from notifier import ledger
from notifier.mails import Mail, mails_for
from notifier.metrics import MAILS
from notifier.payload import batch_repr
from notifier.smtp import PermanentMailError, send_message
from settings import Settings

log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 60.0
Send = Callable[[Settings, EmailMessage], None]


class TransientMailError(Exception):
    """A retryable failure, named by its class only (an SMTP reply may quote an address)."""


def retry_delay(retries: int) -> float:
    """Exponential backoff with full jitter, capped: 0.5 s, 1 s, 2 s ... 60 s."""
    ceiling = min(MAX_BACKOFF_SECONDS, 0.5 * (2**retries))
    return random.uniform(ceiling / 2, ceiling)


def deliver(engine: Engine, settings: Settings, mail: Mail, send: Send = send_message) -> str:
    """Claim, send and record one mail in one transaction; the outcome's name."""
    event = mail.event
    with engine.begin() as conn:
        # SMTP talks for a few round trips of at most smtp_timeout each, inside the transaction.
        ledger.bound_transaction(conn, settings.smtp_timeout_seconds * 6 + 5)
        if mail.expired(datetime.now(UTC)):
            if not ledger.claim(conn, event.id, mail.kind, event.user_id, ledger.EXPIRED):
                return "duplicate"
            log.warning(
                "notifier: verification code expired before it could be mailed; not sent",
                extra={"event_id": str(event.id), "kind": mail.kind},
            )
            return ledger.EXPIRED
        if not ledger.claim(conn, event.id, mail.kind, event.user_id):
            return "duplicate"
        _pause_at(settings, "before-send")
        try:
            send(settings, mail.to_message(settings.smtp_from))
        except PermanentMailError as exc:
            log.warning(
                "notifier: mail refused for good (%s); not retried",
                exc,
                extra={"event_id": str(event.id), "kind": mail.kind},
            )
            ledger.set_outcome(conn, event.id, mail.kind, ledger.REJECTED)
            return ledger.REJECTED
        # The crash window: the server has the mail, the claim is not committed yet.
        _pause_at(settings, "after-send")
    log.info("notifier: mailed %s", mail.kind, extra={"event_id": str(event.id), "kind": mail.kind})
    return ledger.SENT


def notify(
    engine: Engine,
    settings: Settings,
    deliveries: list[Delivery],
    send: Send = send_message,
    keys: DataKeys | None = None,
) -> Counter[str]:
    """Mail what each delivered event calls for; counts of outcomes ("no-mail", "unreadable",
    "forgotten" too). ``keys`` opens the events' personal fields."""
    outcomes: Counter[str] = Counter()
    for delivery in deliveries:
        try:
            event = parse_event(delivery.raw(), keys)
        except InvalidEvent as exc:
            # The projector dead-letters it; there is no mail in what cannot be read.
            log.warning("notifier: unreadable event at %s skipped: %s", delivery.source, str(exc)[:200])
            outcomes["unreadable"] += 1
            continue
        if event.forgotten:  # its user was erased: there is no address left to write to
            outcomes["forgotten"] += 1
            continue
        mails = mails_for(event)
        if not mails:
            outcomes["no-mail"] += 1
        for mail in mails:
            outcome = deliver(engine, settings, mail, send)
            MAILS.labels(mail.kind, outcome).inc()
            outcomes[outcome] += 1
    return outcomes


def _pause_at(settings: Settings, phase: str) -> None:
    if settings.notifier_pause_at == phase:
        # A test hook (NOTIFIER_PAUSE_AT): hold here, at a known point, to be killed.
        log.warning("notifier: paused at %s", phase)
        time.sleep(600)


@shared_task(name=NOTIFY_TASK, bind=True, max_retries=None, ignore_result=True)
def send_mail_task(self: Task, deliveries: list[dict[str, Any]]) -> dict[str, int]:
    settings: Settings = self.app.settings
    items = [Delivery.from_dict(item) for item in deliveries]
    engine = worker_engine(settings.notifier_database_url)
    try:
        # A key store per batch: a user erased since the last batch is unreadable in this one.
        keys = batch_keys(
            worker_engine(settings.notifier_keys_database_url),
            settings.data_master_keys,
            settings.data_master_keys_file,
        )
        outcomes = notify(engine, settings, items, keys=keys)
    except Exception as exc:
        # A failed task is acked and its mails lost: retry instead, with capped backoff.
        delay = retry_delay(self.request.retries)
        log.warning(
            "notifier: %s, retry in %.1f s",
            exc.__class__.__name__,
            delay,
            extra={"retries": self.request.retries, "events": len(items)},
        )
        raise self.retry(
            countdown=delay, exc=TransientMailError(exc.__class__.__name__), argsrepr=batch_repr(deliveries)
        ) from None
    log.info(
        "notifier: sent %d, duplicates %d, expired %d, rejected %d, no mail %d, unreadable %d",
        outcomes["sent"],
        outcomes["duplicate"],
        outcomes["expired"],
        outcomes["rejected"],
        outcomes["no-mail"],
        outcomes["unreadable"],
        extra={"request_ids": sorted({i.request_id for i in items if i.request_id})},
    )
    return dict(outcomes)
