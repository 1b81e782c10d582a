"""Signing up, verifying the email, signing in."""

from __future__ import annotations

import httpx

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
