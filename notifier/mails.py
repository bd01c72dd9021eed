"""Which mail an event calls for, and its text: pure functions, no I/O.

One event gives at most one mail of each kind; (event id, kind) is what the ledger claims.
Texts are plain, English and short. Nothing here logs: a mail holds addresses and codes.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from event_contract import Event

VERIFICATION_CODE = "email-verification-code"
PASSWORD_CHANGED = "password-changed"
EMAIL_CHANGED = "email-changed"
NEW_DEVICE_SIGN_IN = "new-device-sign-in"
KINDS = (VERIFICATION_CODE, PASSWORD_CHANGED, EMAIL_CHANGED, NEW_DEVICE_SIGN_IN)


@dataclass(frozen=True)
class Mail:
    event: Event
    kind: str
    to: str
    subject: str
    body: str
    # A verification code mailed after this time is useless: it is not sent at all.
    expires_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def message_id(self, sender_domain: str) -> str:
        # The event id names the mail, so a mailbox can drop a copy sent twice (the crash window).
        return f"<{self.event.id}.{self.kind}@{sender_domain}>"

    def to_message(self, sender: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = sender
        message["To"] = self.to
        message["Subject"] = self.subject
        message["Date"] = format_datetime(self.event.time)
        message["Message-ID"] = self.message_id(_domain(sender))
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
        message.set_content(_wrapped(self.body))
        return message


def mails_for(event: Event) -> list[Mail]:
    """The mails ``event`` calls for (none for most types)."""
    data = event.data
    if event.type == "EmailChangeRequested":
        expires = datetime.fromisoformat(data["expires_at"])
        return [
            Mail(
                event,
                VERIFICATION_CODE,
                data["new_email"],
                "Your verification code",
                f"Your code to confirm this address as your new sign-in email is:\n\n"
                f"    {data['code']}\n\n"
                f"It expires at {expires:%Y-%m-%d %H:%M} UTC. If you did not ask to change "
                f"your email, ignore this message: nothing changes without the code.\n",
                expires_at=expires,
            )
        ]
    if event.type == "PasswordChanged":
        return [
            Mail(
                event,
                PASSWORD_CHANGED,
                data["email"],
                "Your password was changed",
                f"The password of your account was changed at {_when(event)}. Your other "
                f"sessions were signed out.\n\nIf this was not you, reset your password at "
                f"once and contact support.\n",
            )
        ]
    if event.type == "EmailChanged":
        return [
            Mail(
                event,
                EMAIL_CHANGED,
                data["previous_email"],
                "Your email was changed",
                f"The sign-in email of your account was changed from this address to "
                f"{data['email']} at {_when(event)}.\n\nIf this was not you, contact support "
                f"at once.\n",
            )
        ]
    if event.type == "SessionStarted" and data.get("new_device"):
        return [
            Mail(
                event,
                NEW_DEVICE_SIGN_IN,
                data["email"],
                "New sign-in from a new device",
                f"Your account was signed in to from a device it had not used before, at "
                f"{_when(event)}.\n\n"
                f"    Device: {data.get('user_agent') or 'unknown'}\n"
                f"    IP address: {data.get('ip') or 'unknown'}\n\n"
                f"If this was you, there is nothing to do. If not, change your password and "
                f"sign out of every session.\n",
            )
        ]
    return []


def _wrapped(body: str) -> str:
    # Short lines keep the mail readable as sent (no quoted-printable soft breaks); indented
    # lines (a code, a device) stay as they are.
    def fill(line: str) -> str:
        return textwrap.fill(line, 72, break_long_words=False, break_on_hyphens=False)

    return "\n".join(line if line.startswith(" ") else fill(line) for line in body.split("\n"))


def _when(event: Event) -> str:
    return f"{event.time:%Y-%m-%d %H:%M} UTC"


def _domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rpartition("@")[2] or "localhost"
