"""Who may message me: everyone, people I follow, nobody — and never across a block."""

from __future__ import annotations

import httpx
import pytest

from craftreel.accounts import repository, service
from craftreel.context import AppContext
from tests.factories import sign_up


async def _may(ctx: AppContext, sender: str, recipient: str) -> bool:
    async with ctx.uow() as uow:
        a = await repository.user_by_handle(uow.session, sender)
        b = await repository.user_by_handle(uow.session, recipient)
        assert a is not None and b is not None
        return await service.may_message(uow, a, b)


@pytest.mark.parametrize(
    ("policy", "stranger", "followed"),
    [("everyone", True, True), ("following", False, True), ("nobody", False, False)],
)
async def test_message_policy(
    client: httpx.AsyncClient, ctx: AppContext, policy: str, stranger: bool, followed: bool
) -> None:
    maker = await sign_up(client, "inboxer")
    await sign_up(client, "stranger")
    await sign_up(client, "friend")
    await client.put("/api/v1/people/friend/follow", headers=maker.auth)
    await client.patch("/api/v1/me/privacy", headers=maker.auth, json={"message_policy": policy})
    assert await _may(ctx, "stranger", "inboxer") is stranger
    assert await _may(ctx, "friend", "inboxer") is followed


async def test_blocks_forbid_messages_both_ways(client: httpx.AsyncClient, ctx: AppContext) -> None:
    maker = await sign_up(client, "blocky")
    await sign_up(client, "nuisance")
    assert await _may(ctx, "nuisance", "blocky")
    await client.put("/api/v1/people/nuisance/block", headers=maker.auth)
    assert not await _may(ctx, "nuisance", "blocky")
    assert not await _may(ctx, "blocky", "nuisance")


async def test_bad_message_policy_is_refused(client: httpx.AsyncClient) -> None:
    person = await sign_up(client, "picky")
    response = await client.patch(
        "/api/v1/me/privacy", headers=person.auth, json={"message_policy": "robots"}
    )
    assert response.status_code == 422
    me = (await client.get("/api/v1/me", headers=person.auth)).json()
    assert me["message_policy"] == "everyone"
