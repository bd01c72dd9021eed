"""notifier.smtp against a real SMTP server (aiosmtpd, in this process): a 5xx refusal is
permanent (recorded as rejected, not retried); a 4xx or a server away is retried."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator
from dataclasses import replace
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from notifier.smtp import PermanentMailError, send_message
from tests.support.environment import TEST_SETTINGS


class Refusing:
    """Refuses recipients by their local part: gone@ for good (550), busy@ for now (451)."""

    def __init__(self) -> None:
        self.accepted: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("gone@"):
            return "550 5.1.1 <gone@example.com>: no such user"
        if address.startswith("busy@"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.accepted.extend(envelope.rcpt_tos)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server() -> Iterator[tuple[Refusing, int]]:
    handler = Refusing()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def _message(to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "no-reply@cqrs.localhost", to, "test"
    message.set_content("hello")
    return message


def test_an_accepted_mail_returns(server):
    handler, port = server
    send_message(replace(TEST_SETTINGS, smtp_port=port), _message("ada@example.com"))
    assert handler.accepted == ["ada@example.com"]


def test_a_5xx_refusal_is_permanent_and_names_no_address(server):
    _, port = server
    with pytest.raises(PermanentMailError) as caught:
        send_message(replace(TEST_SETTINGS, smtp_port=port), _message("gone@example.com"))
    assert str(caught.value) == "SMTP 550" and caught.value.__suppress_context__


def test_a_4xx_refusal_and_a_server_away_are_transient(server):
    _, port = server
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send_message(replace(TEST_SETTINGS, smtp_port=port), _message("busy@example.com"))
    with pytest.raises(ConnectionRefusedError):
        send_message(replace(TEST_SETTINGS, smtp_port=_free_port()), _message("ada@example.com"))
