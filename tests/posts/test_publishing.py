"""Posts from uploaded media: drafts, publishing now / when ready / on schedule, edits, deletes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select, update

from craftreel.config import Settings
from craftreel.context import AppContext, build_context
from craftreel.core.clock import utcnow
from craftreel.core.jobs import Job, JobStatus
from craftreel.media.models import MediaKind, MediaObject, MediaStatus
from craftreel.posts.models import Post, PostHashtag, PostMention
from tests.conftest import client_for, fresh_context, running_app
from tests.factories import Person, sign_up
from tests.media import media_factory
from tests.media.test_pipeline import upload
from tests.posts.factories import make_post, ready_media

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@asynccontextmanager
async def reopened_context(settings: Settings) -> AsyncIterator[AppContext]:
    """A second app context on the same database, its tables kept (a restarted process)."""
    context = build_context(settings)
    try:
        yield context
    finally:
        await context.close()


async def drain(app: Any) -> None:
    await asyncio.wait_for(app.state.background.runner.drain(), 60)


async def new_draft(
    client: httpx.AsyncClient, ctx: AppContext, person: Person, **fields: Any
) -> dict[str, Any]:
    media_id = fields.pop("media_id", None) or await ready_media(ctx, person)
    response = await client.post(
        "/api/v1/posts", json={"media_ids": [str(media_id)], **fields}, headers=person.auth
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_draft_is_seen_only_by_its_author(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "knitter")
    other = await sign_up(client, "viewer")
    draft = await new_draft(
        client,
        ctx,
        maker,
        caption="Cuffs for @viewer #knitting #Socks #knitting",
        chapters=[{"at": 62, "title": "Knit the cuff"}, {"at": 0, "title": "Cast on"}],
        materials=["  Merino   4-ply ", "", "2.5 mm needles"],
    )
    assert draft["status"] == "draft"
    assert draft["hashtags"] == ["knitting", "socks"]
    assert draft["mentions"] == ["viewer"]
    assert [c["title"] for c in draft["chapters"]] == ["Cast on", "Knit the cuff"]
    assert draft["materials"] == ["Merino 4-ply", "2.5 mm needles"]
    assert draft["kind"] == "video"
    mine = await client.get(f"/api/v1/posts/{draft['id']}", headers=maker.auth)
    assert mine.status_code == 200
    for headers in (other.auth, {}):
        hidden = await client.get(f"/api/v1/posts/{draft['id']}", headers=headers)
        assert hidden.status_code == 404
        assert hidden.json()["error"]["code"] == "post_not_found"
    listed = await client.get("/api/v1/posts/drafts", headers=maker.auth)
    assert [p["id"] for p in listed.json()["items"]] == [draft["id"]]
    assert (await client.get("/api/v1/posts/drafts", headers=other.auth)).json()["items"] == []
    async with ctx.sessions() as session:
        tags = (await session.scalars(select(PostHashtag.tag).order_by(PostHashtag.tag))).all()
        mentions = await session.scalar(select(func.count()).select_from(PostMention))
    assert list(tags) == ["knitting", "socks"]
    assert mentions == 1


async def test_autosave_changes_only_what_is_sent(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "potter")
    draft = await new_draft(client, ctx, maker, caption="first", materials=["clay"])
    saved = await client.patch(
        f"/api/v1/posts/{draft['id']}", json={"caption": "second #glaze"}, headers=maker.auth
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["caption"] == "second #glaze"
    assert saved.json()["materials"] == ["clay"]
    assert saved.json()["edited_at"] is None  # drafts are not "edited"


@pytest.mark.parametrize(
    ("chapters", "status", "code"),
    [
        ([{"at": 95, "title": "Past the end"}], 400, "invalid_input"),
        ([{"at": 5, "title": "A"}, {"at": 5, "title": "B"}], 422, "validation_error"),
        ([{"at": -1, "title": "Before the start"}], 422, "validation_error"),
        ([{"at": 3, "title": "   "}], 422, "validation_error"),
    ],
)
async def test_bad_chapters_are_refused_and_change_nothing(
    client: httpx.AsyncClient, ctx: AppContext, chapters: list[Any], status: int, code: str
) -> None:
    maker = await sign_up(client, "weaver")
    draft = await new_draft(client, ctx, maker, chapters=[{"at": 1, "title": "Warp"}])
    response = await client.patch(
        f"/api/v1/posts/{draft['id']}", json={"chapters": chapters}, headers=maker.auth
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    again = await client.get(f"/api/v1/posts/{draft['id']}", headers=maker.auth)
    assert again.json()["chapters"] == [{"at": 1.0, "title": "Warp"}]


async def test_media_rules_for_a_new_post(client: httpx.AsyncClient, ctx: AppContext) -> None:
    maker = await sign_up(client, "jeweller")
    thief = await sign_up(client, "thief")
    media_id = await ready_media(ctx, maker)
    stolen = await client.post(
        "/api/v1/posts", json={"media_ids": [str(media_id)]}, headers=thief.auth
    )
    assert stolen.status_code == 404
    mixed = await client.post(
        "/api/v1/posts",
        json={"media_ids": [str(media_id), str(await ready_media(ctx, maker, MediaKind.IMAGE))]},
        headers=maker.auth,
    )
    assert mixed.status_code == 400
    failed = await ready_media(ctx, maker, status=MediaStatus.FAILED, playable=False)
    refused = await client.post(
        "/api/v1/posts", json={"media_ids": [str(failed)]}, headers=maker.auth
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "media_failed"
    await new_draft(client, ctx, maker, media_id=media_id)
    twice = await client.post(
        "/api/v1/posts", json={"media_ids": [str(media_id)]}, headers=maker.auth
    )
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "media_in_use"
    photos = await client.post(
        "/api/v1/posts",
        json={"media_ids": [str(await ready_media(ctx, maker, MediaKind.IMAGE)) for _ in range(3)]},
        headers=maker.auth,
    )
    assert photos.status_code == 201
    assert photos.json()["kind"] == "photos"
    assert len(photos.json()["media"]) == 3
    async with ctx.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Post)) == 2


async def test_publish_makes_public_media_public_and_others_signed(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "sewist")
    public = await make_post(client, ctx, maker, caption="public #sewing")
    followers = await make_post(client, ctx, maker, visibility="followers")
    assert public["status"] == "published" and public["published_at"]
    assert public["media"][0]["playback_url"].startswith("/media/media/")
    assert followers["media"][0]["playback_url"].startswith("/media/_s/")
    # Publishing again changes nothing.
    again = await client.post(f"/api/v1/posts/{public['id']}/publish", json={}, headers=maker.auth)
    assert again.json()["published_at"] == public["published_at"]
    # Editing the visibility flips the media with it; an edit is marked as such.
    edited = await client.patch(
        f"/api/v1/posts/{public['id']}",
        json={"visibility": "private", "caption": "now private #quiet"},
        headers=maker.auth,
    )
    assert edited.status_code == 200
    assert edited.json()["edited_at"] is not None
    assert edited.json()["media"][0]["playback_url"].startswith("/media/_s/")
    async with ctx.sessions() as session:
        tags = (await session.scalars(select(PostHashtag.tag))).all()
        published_at = await session.scalar(
            select(PostHashtag.published_at).where(PostHashtag.tag == "quiet")
        )
    assert list(tags) == ["quiet"]
    assert published_at is not None


async def test_publishing_needs_playable_media_or_waits_for_it(
    client: httpx.AsyncClient, ctx: AppContext, app: Any
) -> None:
    maker = await sign_up(client, "carver")
    media_id = await ready_media(
        ctx, maker, status=MediaStatus.PROCESSING, playable=False, duration_s=None
    )
    draft = await new_draft(client, ctx, maker, media_id=media_id)
    now = await client.post(f"/api/v1/posts/{draft['id']}/publish", json={}, headers=maker.auth)
    assert now.status_code == 409
    assert now.json()["error"]["code"] == "media_not_ready"
    waiting = await client.post(
        f"/api/v1/posts/{draft['id']}/publish", json={"when_ready": True}, headers=maker.auth
    )
    assert waiting.json()["status"] == "waiting"
    # The media fails: the post goes back to being a draft, saying why.
    async with ctx.uow() as uow:
        await uow.session.execute(
            update(MediaObject)
            .where(MediaObject.id == media_id)
            .values(status=MediaStatus.FAILED, failure_code="corrupt")
        )
        ctx.jobs.enqueue(uow, "media.settled", {"media_id": str(media_id)})
    await drain(app)
    back = (await client.get(f"/api/v1/posts/{draft['id']}", headers=maker.auth)).json()
    assert back["status"] == "draft"
    assert back["publish_error"]


async def test_publish_when_ready_with_a_real_upload(
    client: httpx.AsyncClient, ctx: AppContext, app: Any, tmp_path: Path
) -> None:
    """The real pipeline: upload a clip, ask to publish when ready, and it goes public the
    moment the first rung can play — media made public with it."""
    maker = await sign_up(client, "filmer")
    clip = await asyncio.to_thread(media_factory.portrait_phone_video, tmp_path, 2)
    media_id = await upload(client, maker, clip, "video")
    draft = await new_draft(client, ctx, maker, media_id=media_id, caption="quick #test")
    response = await client.post(
        f"/api/v1/posts/{draft['id']}/publish", json={"when_ready": True}, headers=maker.auth
    )
    assert response.json()["status"] in ("waiting", "published")
    await drain(app)
    post = (await client.get(f"/api/v1/posts/{draft['id']}")).json()
    assert post["status"] == "published"
    assert post["media"][0]["playable"] is True
    # Served to anyone without a signature; the poster is cacheable for good.
    assert post["media"][0]["playback_url"].startswith("/media/media/")
    assert (await client.get(post["media"][0]["playback_url"])).status_code == 200
    poster = await client.get(post["media"][0]["poster_url"])
    assert poster.status_code == 200
    assert "immutable" in poster.headers["cache-control"]


async def _make_due(ctx: AppContext, post_id: str) -> None:
    """Move a scheduled post and its job to now, as if the time had come."""
    now = utcnow()
    async with ctx.uow() as uow:
        post = await uow.session.get(Post, UUID(post_id))
        assert post is not None and post.scheduled_at is not None
        old = post.scheduled_at.isoformat()
        post.scheduled_at = now
        await uow.session.execute(
            update(Job)
            .where(Job.kind == "posts.publish_scheduled")
            .values(run_at=now, payload={"post_id": post_id, "at": now.isoformat()})
        )
    assert old != now.isoformat()


async def test_scheduled_publishing_happens_exactly_once_across_a_restart(
    settings: Settings, tmp_path: Path
) -> None:
    async with fresh_context(settings) as ctx:
        # The first process schedules, then stops before the time comes.
        async with running_app(settings, ctx) as app, client_for(app) as client:
            maker = await sign_up(client, "scheduler")
            draft = await new_draft(client, ctx, maker, caption="Sunday #wip")
            bad = await client.post(
                f"/api/v1/posts/{draft['id']}/schedule",
                json={"at": (utcnow() - timedelta(minutes=1)).isoformat()},
                headers=maker.auth,
            )
            assert bad.status_code == 400
            at = utcnow() + timedelta(hours=2)
            scheduled = await client.post(
                f"/api/v1/posts/{draft['id']}/schedule",
                json={"at": at.isoformat()},
                headers=maker.auth,
            )
            assert scheduled.status_code == 200, scheduled.text
            assert scheduled.json()["status"] == "scheduled"
            await drain(app)
            assert (await client.get(f"/api/v1/posts/{draft['id']}")).status_code == 404
        await _make_due(ctx, draft["id"])
        # A duplicate delivery of the same job, as a redelivering queue could make.
        async with ctx.uow() as uow:
            job = (
                await uow.session.scalars(select(Job).where(Job.kind == "posts.publish_scheduled"))
            ).one()
            ctx.jobs.enqueue(uow, job.kind, dict(job.payload))
    # A new process (a restart) finds the due job in the database and runs it.
    async with (
        reopened_context(settings) as ctx2,
        running_app(settings, ctx2) as app2,
        client_for(app2) as client2,
    ):
        await drain(app2)
        post = (await client2.get(f"/api/v1/posts/{draft['id']}")).json()
        assert post["status"] == "published"
        async with ctx2.sessions() as session:
            jobs = (
                await session.scalars(
                    select(Job.status).where(Job.kind == "posts.publish_scheduled")
                )
            ).all()
            row = await session.get(Post, UUID(draft["id"]))
        assert list(jobs) == [JobStatus.DONE, JobStatus.DONE]
        assert row is not None and row.published_at is not None
        first = row.published_at
        # Running the job yet again publishes nothing new.
        async with ctx2.uow() as uow:
            ctx2.jobs.enqueue(uow, "posts.publish_scheduled", dict(job.payload))
        await drain(app2)
        async with ctx2.sessions() as session:
            again = await session.get(Post, UUID(draft["id"]))
        assert again is not None and again.published_at == first


async def test_unschedule_and_owner_only_changes(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "planner")
    other = await sign_up(client, "meddler")
    draft = await new_draft(client, ctx, maker)
    at = (utcnow() + timedelta(days=1)).isoformat()
    for method, path, body in (
        ("PATCH", "", {"caption": "mine now"}),
        ("POST", "/publish", {}),
        ("POST", "/schedule", {"at": at}),
        ("DELETE", "", None),
    ):
        response = await client.request(
            method, f"/api/v1/posts/{draft['id']}{path}", json=body, headers=other.auth
        )
        assert response.status_code == 404, (method, path)
    scheduled = await client.post(
        f"/api/v1/posts/{draft['id']}/schedule", json={"at": at}, headers=maker.auth
    )
    assert scheduled.json()["status"] == "scheduled"
    back = await client.post(f"/api/v1/posts/{draft['id']}/unschedule", headers=maker.auth)
    assert back.json()["status"] == "draft" and back.json()["scheduled_at"] is None
    nope = await client.post(f"/api/v1/posts/{draft['id']}/unschedule", headers=maker.auth)
    assert nope.status_code == 409


async def test_delete_removes_the_post_and_a_job_removes_its_media(
    client: httpx.AsyncClient, ctx: AppContext, app: Any
) -> None:
    maker = await sign_up(client, "tidy")
    post = await make_post(client, ctx, maker)
    media_id = UUID(post["media"][0]["id"])
    await ctx.storage.put(f"media/{media_id}/r1/poster.jpg", b"jpeg", "image/jpeg")
    deleted = await client.delete(f"/api/v1/posts/{post['id']}", headers=maker.auth)
    assert deleted.status_code == 204
    assert (await client.get(f"/api/v1/posts/{post['id']}", headers=maker.auth)).status_code == 404
    await drain(app)
    async with ctx.sessions() as session:
        assert await session.get(MediaObject, media_id) is None
    assert await ctx.storage.stat(f"media/{media_id}/r1/poster.jpg") is None
