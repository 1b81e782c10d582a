"""The /ws socket against a real uvicorn: who may connect, catching up after a disconnect,
events that roll back, and order.updated reaching exactly the buyer and the seller — on
SQLite and PostgreSQL, and across two app instances through Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from craftreel.config import Settings
from craftreel.context import AppContext
from craftreel.core.bus import user_channel
from craftreel.core.clock import utcnow
from craftreel.realtime import service as realtime
from craftreel.realtime.models import Event
from craftreel.shop import live
from tests.accounts.test_pages import Browser
from tests.conftest import client_for, fresh_context
from tests.factories import Person, sign_up
from tests.realtime.server import (
    close_code,
    next_frame,
    nothing_pending,
    serving,
    socket,
    until_ready,
)
from tests.shop.test_orders import paid_order
from tests.shop.test_payments import _settings, payments_app, settings

__all__ = ["settings"]  # the fixture (payment settings), imported for these tests


@dataclass
class Live:
    """An app instance: its context, an API client, and the base URL of its socket."""

    ctx: AppContext
    app: FastAPI
    client: httpx.AsyncClient
    ws: str

    async def user_id(self, person: Person) -> UUID:
        me = await self.client.get("/api/v1/me", headers=person.auth)
        assert me.status_code == 200, me.text
        return UUID(me.json()["id"])

    async def emit(self, person: Person, payload: dict[str, Any]) -> None:
        """A test event for ``person``, written and committed as a service would."""
        user_id = await self.user_id(person)
        async with self.ctx.uow() as uow:
            realtime.emit(uow, [user_id], "test.note", payload)


@asynccontextmanager
async def live_instance(settings: Settings, ctx: AppContext) -> AsyncIterator[Live]:
    async with (
        payments_app(settings, ctx) as application,
        client_for(application) as client,
        serving(application) as ws,
    ):
        yield Live(ctx, application, client, ws)


@pytest.fixture
async def app_live(settings: Settings, ctx: AppContext) -> AsyncIterator[Live]:
    async with live_instance(settings, ctx) as instance:
        yield instance


def bearer(person: Person) -> dict[str, str]:
    return person.auth


async def web_cookie(app_live: Live, person: Person) -> str:
    """The session cookie of a browser that signed in through the form."""
    async with client_for(app_live.app, "203.0.113.50") as web:  # a cookie jar of its own
        signed = await Browser(web).sign_in(person.email)
        assert signed.status_code == 303, signed.text
        return str(web.cookies["cr_session"])


# --- who may connect --------------------------------------------------------------------


async def test_a_browser_connects_with_its_session_cookie(app_live: Live) -> None:
    ada = await sign_up(app_live.client, "ada_cookie")
    cookie = await web_cookie(app_live, ada)
    host = app_live.ws.removeprefix("ws://")
    async with socket(
        app_live.ws, headers={"Cookie": f"cr_session={cookie}"}, origin=f"http://{host}"
    ) as ws:
        assert await until_ready(ws) == []
        await app_live.emit(ada, {"hello": "browser"})
        frame = await next_frame(ws)
        assert (frame["type"], frame["payload"]) == ("test.note", {"hello": "browser"})

    # The same cookie sent by another site's page is refused.
    async with socket(
        app_live.ws, headers={"Cookie": f"cr_session={cookie}"}, origin="https://evil.example"
    ) as ws:
        assert await close_code(ws) == 4403


async def test_an_api_client_connects_with_its_bearer_token(app_live: Live) -> None:
    bo = await sign_up(app_live.client, "bo_bearer")
    async with socket(app_live.ws, headers=bearer(bo)) as ws:
        assert await until_ready(ws) == []
        await app_live.emit(bo, {"hello": "app"})
        assert (await next_frame(ws))["payload"] == {"hello": "app"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Cookie": "cr_session=forged"},
    ],
)
async def test_no_one_signed_in_is_closed_with_4401(
    app_live: Live, headers: dict[str, str]
) -> None:
    async with socket(app_live.ws, headers=headers) as ws:
        assert await close_code(ws) == 4401


async def test_a_signed_out_session_cannot_connect(app_live: Live) -> None:
    cy = await sign_up(app_live.client, "cy_signedout")
    out = await app_live.client.post("/api/v1/auth/signout", headers=cy.auth)
    assert out.status_code in (200, 204), out.text
    async with socket(app_live.ws, headers=bearer(cy)) as ws:
        assert await close_code(ws) == 4401


# --- catching up ------------------------------------------------------------------------


async def test_after_a_disconnect_exactly_the_missed_events_arrive_in_order(
    app_live: Live,
) -> None:
    dee = await sign_up(app_live.client, "dee_resumes")
    async with socket(app_live.ws, headers=bearer(dee)) as ws:
        await until_ready(ws)
        await app_live.emit(dee, {"n": 1})
        seen = await next_frame(ws)
        assert seen["payload"] == {"n": 1}

    # Offline: three things happen.
    for n in (2, 3, 4):
        await app_live.emit(dee, {"n": n})

    async with socket(app_live.ws, f"/ws?after={seen['id']}", headers=bearer(dee)) as ws:
        backlog = await until_ready(ws)
        assert [f["payload"] for f in backlog] == [{"n": 2}, {"n": 3}, {"n": 4}]
        assert [f["id"] for f in backlog] == sorted(f["id"] for f in backlog)

        # The bus repeating an event already sent from the backlog is not sent twice…
        repeat = {k: backlog[0][k] for k in ("id", "type", "payload", "created_at")}
        await app_live.ctx.bus.publish(user_channel(await app_live.user_id(dee)), repeat)
        # …and what happens next arrives live, right after.
        await app_live.emit(dee, {"n": 5})
        assert (await next_frame(ws))["payload"] == {"n": 5}
        await nothing_pending(ws)


async def test_resuming_from_before_the_retention_says_reset(app_live: Live) -> None:
    eve = await sign_up(app_live.client, "eve_too_late")
    ancient = realtime.floor_id(utcnow() - timedelta(days=30))
    async with socket(app_live.ws, f"/ws?after={ancient}", headers=bearer(eve)) as ws:
        assert await until_ready(ws) == [{"type": "reset"}]
    async with socket(app_live.ws, "/ws?after=not-an-id", headers=bearer(eve)) as ws:
        assert await until_ready(ws) == [{"type": "reset"}]


async def test_an_event_whose_unit_of_work_rolls_back_is_never_sent(app_live: Live) -> None:
    fay = await sign_up(app_live.client, "fay_rollback")
    fay_id = await app_live.user_id(fay)
    async with socket(app_live.ws, headers=bearer(fay)) as ws:
        await until_ready(ws)
        with pytest.raises(RuntimeError):
            async with app_live.ctx.uow() as uow:
                realtime.emit(uow, [fay_id], "test.note", {"kept": False})
                raise RuntimeError("the change fails")
        await app_live.emit(fay, {"kept": True})
        assert (await next_frame(ws))["payload"] == {"kept": True}
    async with app_live.ctx.sessions() as session:
        payloads = (
            await session.scalars(select(Event.payload).where(Event.user_id == fay_id))
        ).all()
    assert payloads == [{"kept": True}]


async def test_old_events_are_pruned_after_the_retention(app_live: Live) -> None:
    gus = await sign_up(app_live.client, "gus_prunes")
    await app_live.emit(gus, {"n": 1})
    await app_live.emit(gus, {"n": 2})
    sessions = app_live.ctx.sessions
    assert await realtime.prune(sessions, 7, now=utcnow() + timedelta(days=6)) == 0
    assert await realtime.prune(sessions, 7, now=utcnow() + timedelta(days=8)) == 2
    async with sessions() as session:
        assert (await session.scalars(select(Event.id))).all() == []


# --- order.updated ----------------------------------------------------------------------


async def test_order_updates_reach_the_buyer_and_the_seller_and_no_one_else(
    app_live: Live,
) -> None:
    client = app_live.client
    seller, buyer, order = await paid_order(client, app_live.ctx, "hal_ships", "ivy_waits")
    stranger = await sign_up(client, "jo_nosy")
    async with AsyncExitStack() as stack:
        sockets = {
            who.handle: await stack.enter_async_context(socket(app_live.ws, headers=bearer(who)))
            for who in (seller, buyer, stranger)
        }
        for ws in sockets.values():
            await until_ready(ws)

        shipped = await client.post(
            f"/api/v1/orders/{order['id']}/ship",
            headers=seller.auth,
            json={"carrier": "Royal Mail", "tracking_number": "RM123456789GB"},
        )
        assert shipped.status_code == 200, shipped.text
        expected = {
            "order_id": order["id"],
            "status": "shipped",
            "carrier": "Royal Mail",
            "tracking_number": "RM123456789GB",
        }
        for who in (seller, buyer):
            frame = await next_frame(sockets[who.handle])
            assert (frame["type"], frame["payload"]) == ("order.updated", expected)

        delivered = await client.post(f"/api/v1/orders/{order['id']}/delivered", headers=buyer.auth)
        assert delivered.status_code == 200, delivered.text
        completed = await client.post(f"/api/v1/orders/{order['id']}/complete", headers=buyer.auth)
        assert completed.status_code == 200, completed.text
        for who in (seller, buyer):
            statuses = [(await next_frame(sockets[who.handle]))["payload"]["status"] for _ in "ab"]
            assert statuses == ["delivered", "completed"]

        # The stranger heard none of it: the first thing that reaches them is their own.
        await app_live.emit(stranger, {"marker": True})
        assert (await next_frame(sockets[stranger.handle]))["payload"] == {"marker": True}

    async with app_live.ctx.sessions() as session:
        recipients = set(
            (
                await session.scalars(select(Event.user_id).where(Event.type == "order.updated"))
            ).all()
        )
    assert recipients == {await app_live.user_id(seller), await app_live.user_id(buyer)}


async def test_one_order_changed_twice_in_a_transaction_makes_one_event_each(
    app_live: Live,
) -> None:
    seller, buyer, order = await paid_order(app_live.client, app_live.ctx, "kit_twice", "lu_once")
    order_id = UUID(order["id"])

    async def order_events() -> list[Event]:
        async with app_live.ctx.sessions() as session:
            query = select(Event).where(Event.type == "order.updated").order_by(Event.id)
            return list((await session.scalars(query)).all())

    before = {e.id for e in await order_events()}  # being paid told them already
    async with app_live.ctx.uow() as uow:
        await live.order_updated(uow, order_id)
        await live.order_updated(uow, order_id)
    rows = [e for e in await order_events() if e.id not in before]
    assert sorted(str(e.user_id) for e in rows) == sorted(
        [str(await app_live.user_id(seller)), str(await app_live.user_id(buyer))]
    )


# --- across processes -------------------------------------------------------------------


async def test_with_redis_an_event_from_one_instance_reaches_a_socket_on_another(
    backend: str, database_urls: dict[str, str], tmp_path: Path, redis_url: str
) -> None:
    def instance_settings(name: str) -> Settings:
        return _settings(
            database_urls[backend],
            tmp_path / name,
            redis_url=redis_url,
            bus_backend="redis",
            # Rate limits live in Redis too, and outlast this run: keep them out of the way.
            rate_limit_signup="1000/60",
            rate_limit_signin_ip="1000/60",
        )

    async with (
        fresh_context(instance_settings("a")) as ctx_a,
        fresh_context(instance_settings("b")) as ctx_b,
        live_instance(instance_settings("a"), ctx_a) as here,
        live_instance(instance_settings("b"), ctx_b) as there,
    ):
        seller, buyer, order = await paid_order(here.client, ctx_a, "max_here", "nia_there")
        async with socket(there.ws, headers=bearer(buyer)) as ws:
            await until_ready(ws)
            shipped = await here.client.post(
                f"/api/v1/orders/{order['id']}/ship",
                headers=seller.auth,
                json={"carrier": "DPD", "tracking_number": "DPD-42"},
            )
            assert shipped.status_code == 200, shipped.text
            frame = await next_frame(ws)
            assert frame["type"] == "order.updated"
            assert frame["payload"]["tracking_number"] == "DPD-42"
