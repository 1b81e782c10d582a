"""Profiles, privacy, follows, blocks, search, export and deletion."""

from __future__ import annotations

import httpx

from tests.conftest import PASSWORD, Outbox
from tests.factories import sign_in, sign_up


async def test_follow_and_unfollow_public_account(client: httpx.AsyncClient) -> None:
    maker = await sign_up(client, "maker")
    fan = await sign_up(client, "fan")
    first = await client.put("/api/v1/people/maker/follow", headers=fan.auth)
    again = await client.put("/api/v1/people/maker/follow", headers=fan.auth)
    assert first.json() == again.json() == {"status": "active"}
    profile = (await client.get("/api/v1/people/maker", headers=fan.auth)).json()
    assert profile["followers"] == 1
    assert profile["relationship"]["following"] == "active"
    followers = (await client.get("/api/v1/people/maker/followers")).json()
    assert [p["handle"] for p in followers["items"]] == ["fan"]
    following = (await client.get("/api/v1/people/fan/following")).json()
    assert [p["handle"] for p in following["items"]] == ["maker"]

    await client.delete("/api/v1/people/maker/follow", headers=fan.auth)
    assert (await client.get("/api/v1/people/maker")).json()["followers"] == 0
    _ = maker


async def test_private_account_gets_requests_to_approve(client: httpx.AsyncClient) -> None:
    quiet = await sign_up(client, "quiet")
    fan = await sign_up(client, "keenfan")
    other = await sign_up(client, "otherfan")
    await client.patch("/api/v1/me/privacy", headers=quiet.auth, json={"is_private": True})

    asked = await client.put("/api/v1/people/quiet/follow", headers=fan.auth)
    assert asked.json() == {"status": "pending"}
    await client.put("/api/v1/people/quiet/follow", headers=other.auth)
    assert (await client.get("/api/v1/people/quiet")).json()["followers"] == 0
    # Connections of a private account are hidden from people who do not follow it.
    hidden = await client.get("/api/v1/people/quiet/followers", headers=fan.auth)
    assert hidden.status_code == 403

    requests = (await client.get("/api/v1/me/follow-requests", headers=quiet.auth)).json()
    assert {p["handle"] for p in requests["items"]} == {"keenfan", "otherfan"}
    approve = await client.post("/api/v1/me/follow-requests/keenfan/approve", headers=quiet.auth)
    assert approve.status_code == 204
    decline = await client.post("/api/v1/me/follow-requests/otherfan/decline", headers=quiet.auth)
    assert decline.status_code == 204

    profile = (await client.get("/api/v1/people/quiet", headers=fan.auth)).json()
    assert profile["followers"] == 1
    assert profile["relationship"]["following"] == "active"
    visible = await client.get("/api/v1/people/quiet/followers", headers=fan.auth)
    assert [p["handle"] for p in visible.json()["items"]] == ["keenfan"]
    declined = (await client.get("/api/v1/people/quiet", headers=other.auth)).json()
    assert declined["relationship"]["following"] == "none"
    # Nobody can approve a request that was never made.
    none = await client.post("/api/v1/me/follow-requests/otherfan/approve", headers=quiet.auth)
    assert none.status_code == 404


async def test_block_hides_both_ways_and_ends_follows(client: httpx.AsyncClient) -> None:
    blocker = await sign_up(client, "blocker")
    pest = await sign_up(client, "pest")
    await client.put("/api/v1/people/blocker/follow", headers=pest.auth)
    await client.put("/api/v1/people/pest/follow", headers=blocker.auth)

    blocked = await client.put("/api/v1/people/pest/block", headers=blocker.auth)
    assert blocked.status_code == 204

    # The blocked person cannot see, follow or find the blocker.
    seen = await client.get("/api/v1/people/blocker", headers=pest.auth)
    assert seen.status_code == 404
    follow = await client.put("/api/v1/people/blocker/follow", headers=pest.auth)
    assert follow.status_code == 404
    found = (await client.get("/api/v1/people?q=blocker", headers=pest.auth)).json()
    assert found["items"] == []
    # Follows both ways are gone.
    assert (await client.get("/api/v1/people/blocker")).json()["followers"] == 0
    assert (await client.get("/api/v1/people/pest")).json()["followers"] == 0
    blocks = (await client.get("/api/v1/me/blocks", headers=blocker.auth)).json()
    assert [p["handle"] for p in blocks] == ["pest"]

    await client.delete("/api/v1/people/pest/block", headers=blocker.auth)
    assert (await client.get("/api/v1/people/blocker", headers=pest.auth)).status_code == 200


async def test_search_people_by_handle_and_name(client: httpx.AsyncClient) -> None:
    await sign_up(client, "potter_tom", display_name="Tomás Herrera")
    await sign_up(client, "clay_anna", display_name="Anna Potter")
    hidden = await sign_up(client, "potter_hidden")
    await client.patch("/api/v1/me/privacy", headers=hidden.auth, json={"hide_from_search": True})

    found = (await client.get("/api/v1/people?q=potter")).json()
    assert [p["handle"] for p in found["items"]] == ["clay_anna", "potter_tom"]
    by_at = (await client.get("/api/v1/people?q=@potter_t")).json()
    assert [p["handle"] for p in by_at["items"]] == ["potter_tom"]
    # Wildcards in the query are taken literally.
    assert (await client.get("/api/v1/people?q=%25")).json()["items"] == []


async def test_search_pages_do_not_repeat_or_skip(client: httpx.AsyncClient) -> None:
    for n in range(5):
        await client.post(
            "/api/v1/auth/signup",
            json={"email": f"k{n}@example.org", "handle": f"knitter{n}", "password": PASSWORD},
        )
    seen: list[str] = []
    cursor = None
    while True:
        url = "/api/v1/people?q=knitter&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url)).json()
        seen += [p["handle"] for p in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"knitter{n}" for n in range(5)]


async def test_profile_edit(client: httpx.AsyncClient) -> None:
    person = await sign_up(client, "editor")
    response = await client.patch(
        "/api/v1/me/profile",
        headers=person.auth,
        json={
            "display_name": "  Eddie Tor ",
            "bio": "I make quilts.",
            "links": ["https://example.org/shop"],
            "is_maker": True,
            "handle": "Quilt_Eddie",
        },
    )
    assert response.status_code == 200, response.text
    me = response.json()
    assert (me["display_name"], me["handle"], me["is_maker"]) == ("Eddie Tor", "Quilt_Eddie", True)
    assert me["links"] == ["https://example.org/shop"]
    public = (await client.get("/api/v1/people/quilt_eddie")).json()
    assert public["bio"] == "I make quilts."
    assert (await client.get("/api/v1/people/editor")).status_code == 404


async def test_change_email_is_reverified(client: httpx.AsyncClient, outbox: Outbox) -> None:
    person = await sign_up(client, "mover", outbox)
    asked = await client.post(
        "/api/v1/me/email",
        headers=person.auth,
        json={"new_email": "new.home@example.org", "password": PASSWORD},
    )
    assert asked.status_code == 202
    # Until the new address confirms, nothing changes.
    assert (await client.get("/api/v1/me", headers=person.auth)).json()["email"] == person.email
    token = outbox.link("new.home@example.org", "/verify-email-change")
    done = await client.post("/api/v1/auth/confirm-email-change", json={"token": token})
    assert done.status_code == 200
    assert done.json()["email"] == "new.home@example.org"
    await sign_in(client, "new.home@example.org", "mover")


async def test_export_my_data(client: httpx.AsyncClient) -> None:
    person = await sign_up(client, "exporter")
    await sign_up(client, "friend")
    await client.put("/api/v1/people/friend/follow", headers=person.auth)
    data = (await client.get("/api/v1/me/export", headers=person.auth)).json()
    assert data["account"]["handle"] == "exporter"
    assert data["account"]["email"] == person.email
    assert len(data["following"]) == 1
    assert data["sessions"] and "token_hash" not in str(data)


async def test_delete_account_removes_data_and_ends_sessions(client: httpx.AsyncClient) -> None:
    person = await sign_up(client, "leaver")
    other_device = await sign_in(client, person.email, person.handle)
    friend = await sign_up(client, "stayer")
    await client.put("/api/v1/people/stayer/follow", headers=person.auth)

    wrong = await client.post(
        "/api/v1/me/delete", headers=person.auth, json={"password": PASSWORD, "confirm_handle": "x"}
    )
    assert wrong.status_code == 400
    assert (await client.get("/api/v1/me", headers=person.auth)).status_code == 200

    gone = await client.post(
        "/api/v1/me/delete",
        headers=person.auth,
        json={"password": PASSWORD, "confirm_handle": "leaver"},
    )
    assert gone.status_code == 204
    for device in (person, other_device):
        assert (await client.get("/api/v1/me", headers=device.auth)).status_code == 401
    assert (await client.get("/api/v1/people/leaver")).status_code == 404
    assert (await client.get("/api/v1/people/stayer", headers=friend.auth)).json()["followers"] == 0
    again = await client.post(
        "/api/v1/auth/signin", json={"email": person.email, "password": PASSWORD}
    )
    assert again.status_code == 401
    # The email is free to sign up again.
    fresh = await client.post(
        "/api/v1/auth/signup",
        json={"email": person.email, "handle": "leaver", "password": PASSWORD},
    )
    assert fresh.status_code == 201
