"""Sending one message over SMTP (the standard library's smtplib), as the settings say.

Errors fall in two kinds: ``PermanentMailError`` (the server refused this message for good,
a 5xx reply) and everything else (connection refused or lost, a timeout, a 4xx reply),
which the task retries.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from settings import Settings


class PermanentMailError(Exception):
    """The SMTP server refused the message with a 5xx reply: sending it again would not help."""


def send_message(settings: Settings, message: EmailMessage) -> None:
    """Hand ``message`` to the SMTP server; returns once the server accepted it."""
    timeout = settings.smtp_timeout_seconds
    client: smtplib.SMTP
    if settings.smtp_security == "tls":
        client = smtplib.SMTP_SSL(
            settings.smtp_host, settings.smtp_port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
    with client:
        if settings.smtp_security == "starttls":
            client.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            client.login(settings.smtp_user, settings.smtp_password or "")
        try:
            refused = client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            _raise_if_permanent(min(code for code, _ in exc.recipients.values()))
            raise
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            _raise_if_permanent(exc.smtp_code)
            raise
        if refused:  # one recipient only, so smtplib raised above; kept for messages to several
            error = smtplib.SMTPRecipientsRefused(refused)
            _raise_if_permanent(min(code for code, _ in refused.values()))
            raise error


def _raise_if_permanent(code: int) -> None:
    if 500 <= code < 600:
        # The reply text may quote the address: only the code travels on.
        raise PermanentMailError(f"SMTP {code}") from None
