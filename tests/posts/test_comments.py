"""Comments: one level of replies, comments turned off, who may delete what, exact counts
when threads are deleted (also while people reply), rate limits and blocks."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select

from craftreel.accounts.models import User
from craftreel.config import Settings
from craftreel.context import AppContext
from craftreel.core.errors import InvalidInput
from craftreel.posts import interactions
from craftreel.posts.models import Comment, Post
from tests.factories import Person, sign_up
from tests.feed.factories import block, follow, page_through
from tests.posts.factories import make_post, user_id

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "rate_limit_signup": "100/3600",
            "rate_limit_signin_ip": "100/300",
            "rate_limit_comment": "10/600",
        }
    )


async def comment(
    client: httpx.AsyncClient,
    person: Person,
    post: dict[str, Any],
    body: str,
    parent_id: str | None = None,
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/posts/{post['id']}/comments",
        json={"body": body, "parent_id": parent_id},
        headers=person.auth,
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def comment_counts(ctx: AppContext, post_id: str) -> tuple[int, int]:
    """(comment rows of the post, the post's comment_count)."""
    async with ctx.sessions() as session:
        rows = await session.scalar(
            select(func.count()).select_from(Comment).where(Comment.post_id == UUID(post_id))
        )
        count = await session.scalar(select(Post.comment_count).where(Post.id == UUID(post_id)))
    return int(rows or 0), int(count or 0)


async def reply_count(ctx: AppContext, comment_id: str) -> int:
    async with ctx.sessions() as session:
        value = await session.scalar(
            select(Comment.reply_count).where(Comment.id == UUID(comment_id))
        )
    return int(value or 0)


def code_of(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


async def test_comments_and_one_level_of_replies(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "knitter")
    ann = await sign_up(client, "ann")
    bob = await sign_up(client, "bob")
    post = await make_post(client, ctx, maker)

    top = await comment(client, ann, post, "  Which yarn is this?\n ")
    reply = await comment(client, maker, post, "Merino 4-ply", parent_id=top["id"])
    # a reply to a reply joins the thread of the top-level comment
    nested = await comment(client, bob, post, "Thanks, same question", parent_id=reply["id"])

    assert top["body"] == "Which yarn is this?"
    assert top["author"]["handle"] == "ann"
    assert top["parent_id"] is None and top["reply_count"] == 0 and top["can_delete"] is True
    assert reply["parent_id"] == top["id"]
    assert nested["parent_id"] == top["id"]
    assert await comment_counts(ctx, post["id"]) == (3, 3)
    assert await reply_count(ctx, top["id"]) == 2

    listed = (await client.get(f"/api/v1/posts/{post['id']}/comments")).json()
    assert [c["id"] for c in listed["items"]] == [top["id"]]
    assert listed["items"][0]["reply_count"] == 2
    assert listed["items"][0]["can_delete"] is False  # anonymous
    replies = (await client.get(f"/api/v1/comments/{top['id']}/replies")).json()
    assert [c["body"] for c in replies["items"]] == ["Merino 4-ply", "Thanks, same question"]
    seen = (await client.get(f"/api/v1/posts/{post['id']}")).json()
    assert seen["counts"]["comments"] == 3


async def test_comment_lists_page_by_cursor(client: httpx.AsyncClient, ctx: AppContext) -> None:
    maker = await sign_up(client, "weaver")
    fan = await sign_up(client, "chatty")
    post = await make_post(client, ctx, maker)
    tops = [await comment(client, fan, post, f"comment {n}") for n in range(5)]
    replies = [
        await comment(client, maker, post, f"reply {n}", parent_id=tops[0]["id"]) for n in range(5)
    ]

    # top-level comments newest first, replies oldest first (a conversation)
    listed = await page_through(client, f"/api/v1/posts/{post['id']}/comments", limit=2)
    assert [c["id"] for c in listed] == [c["id"] for c in reversed(tops)]
    thread = await page_through(client, f"/api/v1/comments/{tops[0]['id']}/replies", limit=2)
    assert [c["id"] for c in thread] == [c["id"] for c in replies]

    bad = await client.get(f"/api/v1/posts/{post['id']}/comments", params={"cursor": "nope"})
    assert bad.status_code == 400


@pytest.mark.parametrize("body", ["", "   \n ", "x" * 1001])
async def test_empty_or_long_comments_are_refused(
    client: httpx.AsyncClient, ctx: AppContext, body: str
) -> None:
    maker = await sign_up(client, "potter")
    post = await make_post(client, ctx, maker)

    response = await client.post(
        f"/api/v1/posts/{post['id']}/comments", json={"body": body}, headers=maker.auth
    )

    assert response.status_code == 422
    assert await comment_counts(ctx, post["id"]) == (0, 0)


async def test_the_service_refuses_an_empty_comment_too(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "turner")
    post = await make_post(client, ctx, maker)
    async with ctx.uow() as uow:
        user = await uow.session.get(User, await user_id(ctx, "turner"))
        assert user is not None
        with pytest.raises(InvalidInput):
            await interactions.add_comment(ctx, uow, user, UUID(post["id"]), "  ", None)
    assert await comment_counts(ctx, post["id"]) == (0, 0)


async def test_comments_turned_off_keep_the_old_ones_listed(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "quilter")
    fan = await sign_up(client, "fan")
    post = await make_post(client, ctx, maker)
    earlier = await comment(client, fan, post, "Lovely")
    off = await client.patch(
        f"/api/v1/posts/{post['id']}", json={"comments_enabled": False}, headers=maker.auth
    )
    assert off.status_code == 200

    for person in (fan, maker):
        refused = await client.post(
            f"/api/v1/posts/{post['id']}/comments", json={"body": "More!"}, headers=person.auth
        )
        assert refused.status_code == 403
        assert code_of(refused) == "comments_off"
    refused_reply = await client.post(
        f"/api/v1/posts/{post['id']}/comments",
        json={"body": "More!", "parent_id": earlier["id"]},
        headers=fan.auth,
    )
    assert code_of(refused_reply) == "comments_off"

    listed = (await client.get(f"/api/v1/posts/{post['id']}/comments")).json()
    assert [c["id"] for c in listed["items"]] == [earlier["id"]]


async def test_who_may_delete_a_comment(client: httpx.AsyncClient, ctx: AppContext) -> None:
    maker = await sign_up(client, "carver")
    ann = await sign_up(client, "ann")
    bob = await sign_up(client, "bob")
    stranger = await sign_up(client, "stranger")
    await follow(client, ann, maker)
    await follow(client, bob, maker)
    post = await make_post(client, ctx, maker, visibility="followers")
    by_ann = await comment(client, ann, post, "First")
    by_bob = await comment(client, bob, post, "Second")
    another = await comment(client, ann, post, "Third")

    # what each viewer is told they may delete
    as_ann = (await client.get(f"/api/v1/posts/{post['id']}/comments", headers=ann.auth)).json()
    assert {c["body"]: c["can_delete"] for c in as_ann["items"]} == {
        "First": True,
        "Second": False,
        "Third": True,
    }
    as_maker = (await client.get(f"/api/v1/posts/{post['id']}/comments", headers=maker.auth)).json()
    assert all(c["can_delete"] for c in as_maker["items"])

    # bob sees ann's comment but may not delete it; a stranger does not even see it
    refused = await client.delete(f"/api/v1/comments/{by_ann['id']}", headers=bob.auth)
    assert refused.status_code == 403
    assert code_of(refused) == "not_allowed"
    hidden = await client.delete(f"/api/v1/comments/{by_ann['id']}", headers=stranger.auth)
    assert hidden.status_code == 404
    assert code_of(hidden) == "comment_not_found"
    assert (await client.delete(f"/api/v1/comments/{by_ann['id']}")).status_code == 401

    # its author deletes their own; the post's author deletes anyone's
    own = await client.delete(f"/api/v1/comments/{by_ann['id']}", headers=ann.auth)
    assert own.status_code == 204
    moderated = await client.delete(f"/api/v1/comments/{by_bob['id']}", headers=maker.auth)
    assert moderated.status_code == 204
    again = await client.delete(f"/api/v1/comments/{by_bob['id']}", headers=maker.auth)
    assert again.status_code == 404
    assert await comment_counts(ctx, post["id"]) == (1, 1)
    left = (await client.get(f"/api/v1/posts/{post['id']}/comments", headers=ann.auth)).json()
    assert [c["id"] for c in left["items"]] == [another["id"]]


async def test_deleting_threads_and_replies_keeps_counts_exact(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "glassblower")
    ann = await sign_up(client, "ann")
    post = await make_post(client, ctx, maker)
    thread = await comment(client, ann, post, "How hot is the furnace?")
    replies = [
        await comment(client, maker, post, f"answer {n}", parent_id=thread["id"]) for n in range(3)
    ]
    other = await comment(client, ann, post, "And the glass?")
    assert await comment_counts(ctx, post["id"]) == (5, 5)

    # deleting a reply: one fewer on the thread and the post
    gone = await client.delete(f"/api/v1/comments/{replies[0]['id']}", headers=maker.auth)
    assert gone.status_code == 204
    assert await reply_count(ctx, thread["id"]) == 2
    assert await comment_counts(ctx, post["id"]) == (4, 4)

    # deleting the thread takes its replies: the count drops by 1 + 2
    gone = await client.delete(f"/api/v1/comments/{thread['id']}", headers=ann.auth)
    assert gone.status_code == 204
    assert await comment_counts(ctx, post["id"]) == (1, 1)
    replies_of_gone = await client.get(f"/api/v1/comments/{thread['id']}/replies")
    assert replies_of_gone.status_code == 404
    assert code_of(replies_of_gone) == "comment_not_found"
    orphan = await client.post(
        f"/api/v1/posts/{post['id']}/comments",
        json={"body": "late reply", "parent_id": thread["id"]},
        headers=maker.auth,
    )
    assert orphan.status_code == 404
    assert code_of(orphan) == "comment_not_found"
    listed = (await client.get(f"/api/v1/posts/{post['id']}/comments")).json()
    assert [c["id"] for c in listed["items"]] == [other["id"]]


async def test_replies_racing_a_thread_deletion_leave_exact_counts(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    # given a thread with replies, and people still replying to it
    maker = await sign_up(client, "smith")
    fans = [await sign_up(client, f"fan{n}") for n in range(6)]
    post = await make_post(client, ctx, maker)
    keep = await comment(client, fans[0], post, "A separate thought")
    for round_number in range(3):
        thread = await comment(client, fans[0], post, f"Thread {round_number}")
        first = await comment(client, fans[1], post, "first reply", parent_id=thread["id"])
        second = await comment(client, fans[2], post, "second reply", parent_id=thread["id"])

        # when the post's author deletes the thread while replies are being added and deleted
        calls = [
            client.post(
                f"/api/v1/posts/{post['id']}/comments",
                json={"body": f"reply from {fan.handle}", "parent_id": thread["id"]},
                headers=fan.auth,
            )
            for fan in fans[3:]
        ]
        calls.insert(1, client.delete(f"/api/v1/comments/{thread['id']}", headers=maker.auth))
        calls.append(client.delete(f"/api/v1/comments/{first['id']}", headers=fans[1].auth))
        calls.append(client.delete(f"/api/v1/comments/{second['id']}", headers=maker.auth))
        responses = await asyncio.gather(*calls)

        # then nobody got a server error, the thread is gone, and the counts are exact
        assert {r.status_code for r in responses} <= {201, 204, 404}, [r.text for r in responses]
        assert await comment_counts(ctx, post["id"]) == (1, 1)
    listed = (await client.get(f"/api/v1/posts/{post['id']}/comments")).json()
    assert [c["id"] for c in listed["items"]] == [keep["id"]]


async def test_commenting_is_rate_limited_per_person(
    client: httpx.AsyncClient, ctx: AppContext, settings: Settings
) -> None:
    maker = await sign_up(client, "prolific")
    spammer = await sign_up(client, "spammer")
    post = await make_post(client, ctx, maker)
    limit = int(settings.rate_limit_comment.split("/")[0])
    for n in range(limit):
        await comment(client, spammer, post, f"buy now {n}")

    refused = await client.post(
        f"/api/v1/posts/{post['id']}/comments", json={"body": "one more"}, headers=spammer.auth
    )

    assert refused.status_code == 429
    assert code_of(refused) == "rate_limited"
    assert int(refused.headers["retry-after"]) > 0
    # someone else may still comment
    await comment(client, maker, post, "Please stop")
    assert await comment_counts(ctx, post["id"]) == (limit + 1, limit + 1)


async def test_who_may_comment_follows_who_may_see(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "dyer")
    follower = await sign_up(client, "follower")
    stranger = await sign_up(client, "stranger")
    troll = await sign_up(client, "troll")
    await follow(client, follower, maker)
    for_followers = await make_post(client, ctx, maker, visibility="followers")
    public = await make_post(client, ctx, maker)
    draft = await make_post(client, ctx, maker, publish=False)
    trolled = await comment(client, troll, public, "meh")

    async def attempt(person: Person | None, post: dict[str, Any]) -> httpx.Response:
        return await client.post(
            f"/api/v1/posts/{post['id']}/comments",
            json={"body": "Nice"},
            headers=person.auth if person else {},
        )

    # a stranger cannot comment on (or read the comments of) a followers-only post
    hidden = await attempt(stranger, for_followers)
    assert hidden.status_code == 404 and code_of(hidden) == "post_not_found"
    listing = await client.get(f"/api/v1/posts/{for_followers['id']}/comments")
    assert listing.status_code == 404
    assert (await attempt(follower, for_followers)).status_code == 201
    # nobody comments on a draft, its author neither; anonymous people do not comment
    for person in (maker, follower):
        refused = await attempt(person, draft)
        assert refused.status_code == 404 and code_of(refused) == "post_not_found"
    assert (await attempt(None, public)).status_code == 401

    # blocked either way: the post is not found, and neither are the comments
    await block(client, maker, troll)
    refused = await attempt(troll, public)
    assert refused.status_code == 404 and code_of(refused) == "post_not_found"
    replies = await client.get(f"/api/v1/comments/{trolled['id']}/replies", headers=troll.auth)
    assert replies.status_code == 404
    # yet the troll can still delete what they wrote
    own = await client.delete(f"/api/v1/comments/{trolled['id']}", headers=troll.auth)
    assert own.status_code == 204
    await block(client, stranger, maker)
    refused = await attempt(stranger, public)
    assert refused.status_code == 404 and code_of(refused) == "post_not_found"


async def test_comments_of_people_blocked_either_way_are_not_shown(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "baker")
    ann = await sign_up(client, "ann")
    pest = await sign_up(client, "pest")
    post = await make_post(client, ctx, maker)
    by_ann = await comment(client, ann, post, "Recipe please")
    by_pest = await comment(client, pest, post, "Boring")
    await block(client, ann, pest)

    as_ann = (await client.get(f"/api/v1/posts/{post['id']}/comments", headers=ann.auth)).json()
    assert [c["id"] for c in as_ann["items"]] == [by_ann["id"]]
    as_pest = (await client.get(f"/api/v1/posts/{post['id']}/comments", headers=pest.auth)).json()
    assert [c["id"] for c in as_pest["items"]] == [by_pest["id"]]
    anyone = (await client.get(f"/api/v1/posts/{post['id']}/comments")).json()
    assert len(anyone["items"]) == 2

    # and neither can reply to the other
    refused = await client.post(
        f"/api/v1/posts/{post['id']}/comments",
        json={"body": "Rude", "parent_id": by_ann["id"]},
        headers=pest.auth,
    )
    assert refused.status_code == 404 and code_of(refused) == "comment_not_found"
