"""The app served by a real uvicorn on a free port, in the test's own event loop, and a
WebSocket client for it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

#: A guard against a hung test, not a timing assertion: frames arrive in milliseconds.
PATIENCE_SECONDS = 15.0


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """``app`` on 127.0.0.1 (its lifespan not run: the test owns the context); its ws:// base."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # uvicorn offers no event to wait on
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def socket(
    base: str, path: str = "/ws", headers: dict[str, str] | None = None, origin: str | None = None
) -> AsyncIterator[ClientConnection]:
    async with connect(
        base + path,
        additional_headers=headers or {},
        origin=origin,  # type: ignore[arg-type]
        open_timeout=PATIENCE_SECONDS,
    ) as ws:
        yield ws


async def next_frame(ws: ClientConnection) -> dict[str, Any]:
    """The next frame, skipping heartbeats."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), PATIENCE_SECONDS))
        assert isinstance(frame, dict)
        if frame.get("type") != "ping":
            return frame


async def until_ready(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every frame before ``ready`` (the backlog, perhaps a reset)."""
    frames = []
    while (frame := await next_frame(ws))["type"] != "ready":
        frames.append(frame)
    return frames


async def nothing_pending(ws: ClientConnection) -> None:
    """Nothing is queued for this socket: a ping sent now is answered before anything else."""
    await ws.send(json.dumps({"type": "ping"}))
    assert await next_frame(ws) == {"type": "pong"}


async def close_code(ws: ClientConnection) -> int | None:
    """The code the server closed with."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), PATIENCE_SECONDS)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
