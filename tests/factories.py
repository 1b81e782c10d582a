"""Small factories that go through the real API, as a person would."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import PASSWORD, Outbox


@dataclass
class Person:
    handle: str
    email: str
    access_token: str
    refresh_token: str
    session_id: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def sign_up(
    client: httpx.AsyncClient,
    handle: str,
    outbox: Outbox | None = None,
    password: str = PASSWORD,
    **extra: Any,
) -> Person:
    """A person who signed up (and verified, given the outbox) and signed in."""
    email = f"{handle}@example.org"
    response = await client.post(
        "/api/v1/auth/signup",
        json={"email": email, "handle": handle, "password": password, **extra},
    )
    assert response.status_code == 201, response.text
    if outbox is not None:
        token = outbox.link(email, "/verify")
        verified = await client.post("/api/v1/auth/verify-email", json={"token": token})
        assert verified.status_code == 200, verified.text
    return await sign_in(client, email, handle, password)


async def sign_in(
    client: httpx.AsyncClient, email: str, handle: str, password: str = PASSWORD
) -> Person:
    response = await client.post("/api/v1/auth/signin", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    return Person(handle, email, body["access_token"], body["refresh_token"], body["session_id"])
