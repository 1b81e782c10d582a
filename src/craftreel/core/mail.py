"""Outgoing mail: files under var/mail by default, SMTP when configured."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol

import aiosmtplib

from craftreel.core.ids import uuid7

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str


class Mailer(Protocol):
    async def send(self, mail: Mail) -> None:
        """Deliver one message (called after the unit of work commits)."""
        ...


def build_message(sender: str, mail: Mail) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="craftreel.local")
    message.set_content(mail.text)
    return message


class FileMailer:
    """Writes each message as an .eml file: the local outbox you can open and click through."""

    def __init__(self, folder: Path, sender: str) -> None:
        self.folder = folder
        self.sender = sender

    async def send(self, mail: Mail) -> None:
        message = build_message(self.sender, mail)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{uuid7()}.eml"
        tmp = path.with_suffix(".tmp")
        await asyncio.to_thread(tmp.write_bytes, message.as_bytes())
        await asyncio.to_thread(tmp.replace, path)
        log.info("mail written", extra={"to": mail.to, "subject": mail.subject, "path": str(path)})


class SmtpMailer:
    """Hands each message to an SMTP server."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.username, self.password, self.starttls = username, password, starttls

    async def send(self, mail: Mail) -> None:
        await aiosmtplib.send(
            build_message(self.sender, mail),
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            start_tls=self.starttls,
            timeout=30,
        )
        log.info("mail sent", extra={"to": mail.to, "subject": mail.subject})
