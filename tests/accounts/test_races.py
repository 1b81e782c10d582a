"""Races are closed in the database: concurrent sign-ups, refreshes and follows."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import PASSWORD
from tests.factories import sign_up


async def test_concurrent_sign_ups_with_one_email_make_one_account(
    client: httpx.AsyncClient,
) -> None:
    async def attempt(n: int) -> httpx.Response:
        return await client.post(
            "/api/v1/auth/signup",
            json={"email": "Same@example.org", "handle": f"racer{n}", "password": PASSWORD},
        )

    responses = await asyncio.gather(*(attempt(n) for n in range(5)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201, 409, 409, 409, 409]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {"email_taken"}


async def test_concurrent_refreshes_of_one_token_cannot_both_win(client: httpx.AsyncClient) -> None:
    person = await sign_up(client, "doubler")
    body = {"refresh_token": person.refresh_token}
    first, second = await asyncio.gather(
        client.post("/api/v1/auth/refresh", json=body),
        client.post("/api/v1/auth/refresh", json=body),
    )
    codes = sorted([first.status_code, second.status_code])
    # One rotation wins; the other is a reuse, which ends the session for safety.
    assert codes == [200, 401]
    loser = first if first.status_code == 401 else second
    assert loser.json()["error"]["code"] == "token_reused"
    sessions = await client.get("/api/v1/me", headers=person.auth)
    assert sessions.status_code == 401


async def test_concurrent_follows_leave_one_follow(client: httpx.AsyncClient) -> None:
    await sign_up(client, "popular")
    fan = await sign_up(client, "eager")
    responses = await asyncio.gather(
        *(client.put("/api/v1/people/popular/follow", headers=fan.auth) for _ in range(4))
    )
    assert [r.json() for r in responses] == [{"status": "active"}] * 4
    assert (await client.get("/api/v1/people/popular")).json()["followers"] == 1
