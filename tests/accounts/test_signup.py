"""Signing up, verifying the email, signing in."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from tests.conftest import PASSWORD, Outbox
from tests.factories import sign_up


async def test_sign_up_verify_and_sign_in(client: httpx.AsyncClient, outbox: Outbox) -> None:
    response = await client.post(
        "/api/v1/auth/signup",
        json={"email": "Mara@Example.org", "handle": "Wool_Mara", "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    me = response.json()
    assert me["email_verified"] is False
    assert me["handle"] == "Wool_Mara"

    token = outbox.link("Mara@Example.org", "/verify")
    verified = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert verified.status_code == 200
    assert verified.json()["email_verified"] is True

    signin = await client.post(
        "/api/v1/auth/signin", json={"email": "mara@example.ORG", "password": PASSWORD}
    )
    assert signin.status_code == 200
    tokens = signin.json()
    got = await client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert got.json()["handle"] == "Wool_Mara"


async def test_verification_link_works_once(client: httpx.AsyncClient, outbox: Outbox) -> None:
    await sign_up(client, "oncer")
    token = outbox.link("oncer@example.org", "/verify")
    assert (
        await client.post("/api/v1/auth/verify-email", json={"token": token})
    ).status_code == 200
    again = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "token_invalid"


async def test_passwords_are_hashed_and_checked_off_the_event_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """argon2 costs tens of milliseconds: on the loop's thread, every sign-up and sign-in would
    stall every other request of the process for as long."""
    loop_thread = threading.get_ident()
    threads: list[tuple[str, int]] = []
    hash_, verify = PasswordHasher.hash, PasswordHasher.verify

    def noting_hash(self: PasswordHasher, password: str | bytes, **kw: Any) -> str:
        threads.append(("hash", threading.get_ident()))
        return hash_(self, password, **kw)

    def noting_verify(self: PasswordHasher, stored: str | bytes, password: str | bytes) -> Any:
        threads.append(("verify", threading.get_ident()))
        return verify(self, stored, password)

    monkeypatch.setattr(PasswordHasher, "hash", noting_hash)
    monkeypatch.setattr(PasswordHasher, "verify", noting_verify)
    await sign_up(client, "offloop")  # signs up, then signs in
    wrong = await client.post(
        "/api/v1/auth/signin", json={"email": "offloop@example.org", "password": "not it at all"}
    )
    assert wrong.status_code == 401
    assert [kind for kind, _ in threads] == ["hash", "verify", "verify"]
    assert all(thread != loop_thread for _, thread in threads)
