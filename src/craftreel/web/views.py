"""The web shell's pages: the tabs not built yet, offline, and the PWA files.

The home page, Feed and Discover (``/``, ``/feed``, ``/discover``) are served by
``craftreel.feed.views``; the Create tab (``/create``) by ``craftreel.media.views``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from craftreel.accounts.deps import WebOptionalIdentity
from craftreel.core.web import render

STATIC_DIR = Path(__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)

# Tabs whose features are still to come. Each page says so plainly rather than pretending.
COMING_SOON: dict[str, tuple[str, str]] = {
    "inbox": (
        "Inbox",
        "The inbox isn't built yet. Your conversations with makers, custom requests and "
        "notifications will gather here.",
    ),
}


def _coming_soon(request: Request, tab: str) -> HTMLResponse:
    title, blurb = COMING_SOON[tab]
    return render(
        request,
        "web/coming_soon.html",
        {"active_tab": tab, "feature_title": title, "feature_blurb": blurb},
    )


@router.get("/inbox")
async def inbox(request: Request, viewer: WebOptionalIdentity) -> HTMLResponse:
    """The Inbox tab (not built yet)."""
    return _coming_soon(request, "inbox")


@router.get("/offline")
async def offline(request: Request) -> HTMLResponse:
    """The page the service worker shows when a page cannot be fetched."""
    return render(request, "web/offline.html")


@router.get("/manifest.webmanifest")
async def manifest() -> FileResponse:
    """The web app manifest, at the root so the app's scope is the whole site."""
    return FileResponse(
        STATIC_DIR / "manifest.webmanifest",
        media_type="application/manifest+json",
        headers={"Cache-Control": "no-cache"},
    )


@router.get("/sw.js")
async def service_worker() -> FileResponse:
    """The service worker, served from the root so it may control every page."""
    return FileResponse(
        STATIC_DIR / "sw.js",
        media_type="application/javascript",
        headers={"Service-Worker-Allowed": "/", "Cache-Control": "no-cache"},
    )
