"""Media pages: the upload screen (the Create tab).

The page itself is plain HTML; uploader.js speaks tus to ``/api/v1/uploads`` and polls
``/api/v1/media/{id}`` for processing status, so there are no fragments to serve here.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from craftreel.accounts.deps import WebIdentity
from craftreel.config import Settings
from craftreel.core.web import render
from craftreel.deps import Ctx

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class KindLimit:
    """What the page tells (and the uploader checks) before any byte is sent."""

    max_bytes: int
    max_label: str


def size_label(n_bytes: int) -> str:
    """A size as people read it: "4 GB" (for 4 GiB as for 4,000,000,000 bytes), "30 MB"."""
    for unit, power in (("GB", 3), ("MB", 2), ("KB", 1)):
        if n_bytes >= 1000**power:
            if n_bytes % 1024**power == 0:
                return f"{n_bytes // 1024**power} {unit}"
            return f"{n_bytes / 1000**power:.3g} {unit}"
    return f"{n_bytes} bytes"


def kind_limits(settings: Settings) -> dict[str, KindLimit]:
    """The per-kind upload limits, from the same settings the tus endpoint enforces."""
    sizes = {
        "video": settings.upload_max_video_bytes,
        "image": settings.upload_max_image_bytes,
        "audio": settings.upload_max_audio_bytes,
    }
    return {kind: KindLimit(n, size_label(n)) for kind, n in sizes.items()}


def duration_label(seconds: int) -> str:
    """A duration as the page says it: "10 minutes", "1 minute", "90 seconds"."""
    if seconds % 60:
        return f"{seconds} seconds"
    minutes = seconds // 60
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@router.get("/create")
async def create(request: Request, identity: WebIdentity, ctx: Ctx) -> HTMLResponse:
    """The upload screen (signed in only): pick or record a video, photos or audio."""
    settings = ctx.settings
    return render(
        request,
        "media/create.html",
        {
            "active_tab": "create",
            "limits": kind_limits(settings),
            "max_duration": duration_label(settings.media_max_duration_seconds),
        },
    )
