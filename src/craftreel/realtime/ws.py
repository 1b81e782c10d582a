"""The WebSocket at ``/ws``: one per client, carrying that person's events (docs/realtime.md).

A connection subscribes to the person's bus channel *first*, then sends what they missed
from the event log (``?after=<last event id seen>``), then live events, skipping any id it
has already sent — so nothing falls between the backlog and the live stream, and nothing
comes twice. When the bus says messages may have been lost, the connection rereads the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from craftreel.accounts import service as accounts
from craftreel.accounts.deps import SESSION_COOKIE
from craftreel.accounts.service import Identity
from craftreel.context import AppContext
from craftreel.core.bus import Ended, Gap, Subscription, user_channel
from craftreel.core.clock import utcnow
from craftreel.core.errors import NotAuthenticated
from craftreel.realtime import service

log = logging.getLogger(__name__)

router = APIRouter()

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_SERVICE_RESTART = 1012
#: Events read from the log per query while catching up.
BACKLOG_PAGE = 200
#: How far before the newest event sent a reread after a gap starts: transactions commit in
#: a different order than they took their ids, so a later commit may carry an older id.
REREAD_OVERLAP = timedelta(seconds=60)
#: Ids already sent on this connection, remembered to skip repeats.
SENT_MEMORY = 4096


class _Credentials:
    """What the client signed in with: a bearer token or the web session cookie."""

    def __init__(self, websocket: WebSocket, settings_base_url: str) -> None:
        scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
        self.bearer = token.strip() if scheme.lower() == "bearer" and token.strip() else None
        self.cookie = None if self.bearer else websocket.cookies.get(SESSION_COOKIE)
        self.origin_ok = self.bearer is not None or _same_origin(websocket, settings_base_url)

    async def identity(self, ctx: AppContext) -> Identity | None:
        try:
            async with ctx.uow(read_only=True) as uow:
                if self.bearer:
                    return await accounts.authenticate_access_token(uow, ctx, self.bearer)
                if self.cookie:
                    return await accounts.authenticate_web_cookie(uow, self.cookie)
        except NotAuthenticated:
            return None
        return None


def _same_origin(websocket: WebSocket, base_url: str) -> bool:
    """A browser says which page opened the socket: a cookie only counts from our own pages
    (another site's script would otherwise ride on the person's cookie)."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser: nothing rides on anyone's cookie
    netloc = urlsplit(origin).netloc
    return netloc == websocket.headers.get("host") or netloc == urlsplit(base_url).netloc


@router.websocket("/ws")
async def live(websocket: WebSocket, after: str | None = None) -> None:
    """A person's live events; ``after`` is the last event id the client saw."""
    ctx: AppContext = websocket.app.state.ctx
    # Accept first: a close code sent before accepting never reaches a browser's script.
    await websocket.accept()
    credentials = _Credentials(websocket, str(ctx.settings.base_url))
    if not credentials.origin_ok:
        await websocket.close(CLOSE_FORBIDDEN_ORIGIN, "Not from a Craftreel page.")
        return
    identity = await credentials.identity(ctx)
    if identity is None:
        await websocket.close(CLOSE_UNAUTHENTICATED, "Sign in to receive live updates.")
        return
    connection = _Connection(ctx, websocket, credentials, identity.user.id)
    await connection.run(after)


class _Connection:
    def __init__(
        self, ctx: AppContext, websocket: WebSocket, credentials: _Credentials, user_id: UUID
    ) -> None:
        self.ctx = ctx
        self.websocket = websocket
        self.credentials = credentials
        self.user_id = user_id
        self.heartbeat = float(ctx.settings.realtime_heartbeat_seconds)
        self.reauth = float(ctx.settings.realtime_reauth_seconds)
        self._send_lock = asyncio.Lock()
        self._sent: OrderedDict[str, None] = OrderedDict()
        self._newest_sent: datetime | None = None

    async def run(self, after: str | None) -> None:
        async with self.ctx.bus.subscribe(user_channel(self.user_id)) as subscription:
            cursor = await self._resume(after)
            await self._send({"type": "ready", "heartbeat": self.heartbeat})
            pump = asyncio.create_task(self._pump(subscription, cursor))
            listen = asyncio.create_task(self._listen())
            done, pending = await asyncio.wait({pump, listen}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in (*done, *pending):
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, OSError):
                    await task

    async def _resume(self, after: str | None) -> UUID:
        """Send what the client missed since ``after``; the cursor later rereads start from."""
        now = utcnow()
        if after is None:
            return service.floor_id(now)
        try:
            last_seen = UUID(after)
        except ValueError:
            last_seen = None
        retention = timedelta(days=self.ctx.settings.realtime_retention_days)
        if last_seen is None or service.time_of(last_seen) < now - retention:
            # What came after it may be pruned: the client reloads its state instead.
            await self._send({"type": "reset"})
            return service.floor_id(now)
        await self._catch_up(last_seen)
        return last_seen

    async def _catch_up(self, after: UUID) -> None:
        while True:
            async with self.ctx.uow(read_only=True) as uow:
                frames = await service.missed(uow, self.user_id, after, BACKLOG_PAGE)
            for frame in frames:
                await self._send_event(frame)
            if len(frames) < BACKLOG_PAGE:
                return
            after = UUID(frames[-1]["id"])

    async def _send_event(self, frame: dict[str, Any]) -> None:
        event_id = str(frame["id"])
        if event_id in self._sent:
            return
        await self._send(frame)
        self._sent[event_id] = None
        if len(self._sent) > SENT_MEMORY:
            self._sent.popitem(last=False)
        at = service.time_of(UUID(event_id))
        if self._newest_sent is None or at > self._newest_sent:
            self._newest_sent = at

    async def _send(self, frame: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.websocket.send_text(json.dumps(frame))

    async def _close(self, code: int, reason: str) -> None:
        async with self._send_lock:
            if self.websocket.application_state != WebSocketState.DISCONNECTED:
                await self.websocket.close(code, reason)

    async def _pump(self, subscription: Subscription, cursor: UUID) -> None:
        """Live events, rereads after a gap, heartbeats and re-checks of the credentials."""
        loop = asyncio.get_running_loop()
        next_check = loop.time() + self.reauth
        while True:
            try:
                item = await asyncio.wait_for(subscription.next(), timeout=self.heartbeat)
            except TimeoutError:
                await self._send({"type": "ping"})
            else:
                if isinstance(item, Ended):
                    await self._close(CLOSE_SERVICE_RESTART, "The server is restarting.")
                    return
                if isinstance(item, Gap):
                    start = cursor
                    if self._newest_sent is not None:
                        start = max(cursor, service.floor_id(self._newest_sent - REREAD_OVERLAP))
                    await self._catch_up(start)
                else:
                    await self._send_event(item.data)
            if loop.time() >= next_check:
                # A signed-out session or an expired token ends the live stream too.
                identity = await self.credentials.identity(self.ctx)
                if identity is None or identity.user.id != self.user_id:
                    await self._close(CLOSE_UNAUTHENTICATED, "Your session has ended.")
                    return
                next_check = loop.time() + self.reauth

    async def _listen(self) -> None:
        """The client's side: ``{"type": "ping"}`` gets a pong; a disconnect ends the loop."""
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if not text:
                continue
            try:
                body = json.loads(text)
            except ValueError:
                continue
            if isinstance(body, dict) and body.get("type") == "ping":
                await self._send({"type": "pong"})
