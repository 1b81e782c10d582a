"""Mail over SMTP: the app hands its mail to a real SMTP server listening on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from craftreel.config import Settings
from tests.conftest import PASSWORD, Outbox


@dataclass
class SmtpInbox:
    """What a local SMTP server received: envelope recipients and the parsed message."""

    port: int
    received: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for _, rcpt, m in self.received if address in rcpt]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def smtp_inbox() -> Iterator[SmtpInbox]:
    inbox = SmtpInbox(_free_port())
    inbox.start()
    try:
        yield inbox
    finally:
        inbox.stop()


@pytest.fixture
def settings(settings: Settings, smtp_inbox: SmtpInbox) -> Settings:
    """The suite's settings, sending mail to the local SMTP server."""
    return settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp_inbox.port})


async def test_the_verification_mail_arrives_over_smtp_and_its_link_verifies(
    client: httpx.AsyncClient, smtp_inbox: SmtpInbox, outbox: Outbox
) -> None:
    # given an app configured to send mail over SMTP
    # when someone signs up
    response = await client.post(
        "/api/v1/auth/signup",
        json={"email": "Mara@Example.org", "handle": "mara", "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    address = response.json()["email"]  # as the account keeps it
    assert address.lower() == "mara@example.org"

    # then one mail reached the SMTP server, addressed to them, with a verification link
    assert len(smtp_inbox.received) == 1
    sender, recipients, message = smtp_inbox.received[0]
    assert recipients == [address]
    assert sender == "hello@craftreel.local"
    assert message["To"] == address
    assert message["Subject"] == "Confirm your email for Craftreel"
    assert message["Message-ID"]
    body = message.get_content()
    match = re.search(r"https?://\S+/verify\?token=(\S+)", body)
    assert match, body
    assert outbox.messages() == []  # nothing went to the file outbox instead

    # and following the link verifies the account
    verified = await client.post("/api/v1/auth/verify-email", json={"token": match.group(1)})
    assert verified.status_code == 200, verified.text
    assert verified.json()["email_verified"] is True
    signin = await client.post(
        "/api/v1/auth/signin", json={"email": "mara@example.org", "password": PASSWORD}
    )
    assert signin.status_code == 200, signin.text
    me = await client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {signin.json()['access_token']}"}
    )
    assert me.json()["email_verified"] is True


async def test_sign_up_survives_the_mail_server_being_down_and_resend_delivers(
    client: httpx.AsyncClient, smtp_inbox: SmtpInbox
) -> None:
    # given the SMTP server is down
    smtp_inbox.stop()

    # when someone signs up
    response = await client.post(
        "/api/v1/auth/signup",
        json={"email": "ash@example.org", "handle": "ash", "password": PASSWORD},
    )

    # then the account is still made (mail goes after commit and cannot undo it)
    assert response.status_code == 201, response.text
    signin = await client.post(
        "/api/v1/auth/signin", json={"email": "ash@example.org", "password": PASSWORD}
    )
    assert signin.status_code == 200, signin.text
    auth = {"Authorization": f"Bearer {signin.json()['access_token']}"}

    # and once the server is back, asking again delivers a link that works
    smtp_inbox.start()
    resend = await client.post("/api/v1/auth/verify-email/resend", headers=auth)
    assert resend.status_code == 202, resend.text
    [message] = smtp_inbox.to("ash@example.org")
    match = re.search(r"/verify\?token=(\S+)", message.get_content())
    assert match
    verified = await client.post("/api/v1/auth/verify-email", json={"token": match.group(1)})
    assert verified.status_code == 200, verified.text
    assert verified.json()["email_verified"] is True
