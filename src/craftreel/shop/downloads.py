"""Digital listings: the seller attaches the file (a PDF pattern); a buyer whose order is paid
gets a short-lived signed link to it, and nobody else ever does.

Where the file lives: ``media/<listing id>/<secret>.pdf``, where the secret is an HMAC of the
listing id under the app's signing key. Nothing else needs recording (so no column is
needed), the name cannot be guessed from the listing id, and the public ``/media/`` route
refuses it (no public media object has the listing's id); only a signed URL opens it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import tempfile
from pathlib import Path
from typing import IO
from uuid import UUID

from sqlalchemy import select

from craftreel.accounts.models import User
from craftreel.config import Settings
from craftreel.context import AppContext
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import DomainError, InvalidInput, NotFound, PayloadTooLarge
from craftreel.shop import service
from craftreel.shop.models import Listing, ListingKind, Order, OrderLine, OrderStatus, Variant

#: A pattern PDF is a few megabytes; this leaves room for photo-heavy ones.
MAX_BYTES = 50 * 1024 * 1024
#: Orders whose downloads are open: paid, and everything after paid (not cancelled).
UNLOCKED = frozenset(
    {OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.DELIVERED, OrderStatus.COMPLETED}
)
_CHUNK = 1024 * 1024


class NotADigitalListing(InvalidInput):
    """Only digital listings carry a file."""

    code = "not_a_digital_listing"
    message = "Only digital listings have a file to download."


class DigitalFileInvalid(InvalidInput):
    """The file is not a PDF."""

    code = "digital_file_invalid"
    message = "That file is not a PDF. Export your pattern as a PDF and try again."


class DigitalFileTooLarge(PayloadTooLarge):
    """The file is over the size limit."""

    code = "digital_file_too_large"
    message = "That file is too large: a PDF of up to 50 MB, please."


class DownloadNotFound(NotFound):
    """No download here for this person."""

    code = "download_not_found"
    message = "There is no download here."


class DownloadLocked(DomainError):
    """The order is not paid (or was cancelled): its download stays shut."""

    status_code = 403
    code = "download_locked"
    message = "This download opens once the order is paid."


class DownloadNotReady(NotFound):
    """The seller has not attached the file yet."""

    code = "download_not_ready"
    message = "The maker has not attached the file yet. Check back a little later."


def file_key(settings: Settings, listing_id: UUID) -> str:
    secret = hmac.new(
        settings.signing_key, f"digital-file:{listing_id}".encode(), hashlib.sha256
    ).hexdigest()[:32]
    return f"media/{listing_id}/{secret}.pdf"


def _copy_checked(source: IO[bytes], target: Path, limit: int) -> None:
    """Copy an upload to ``target``: a PDF by its first bytes, at most ``limit`` bytes."""
    source.seek(0)
    head = source.read(5)
    if head != b"%PDF-":
        raise DigitalFileInvalid(field="file")
    size = len(head)
    with target.open("wb") as out:
        out.write(head)
        while chunk := source.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise DigitalFileTooLarge(max_bytes=limit, field="file")
            out.write(chunk)


async def attach_file(
    ctx: AppContext, uow: UnitOfWork, seller: User, listing_id: UUID, upload: IO[bytes]
) -> None:
    """Store (or replace) the file of one of the seller's digital listings."""
    listing, _, _ = await service.own_listing(uow, seller, listing_id)
    if listing.kind != ListingKind.DIGITAL:
        raise NotADigitalListing(field="file")
    await asyncio.to_thread(ctx.settings.work_dir.mkdir, parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="digital-", suffix=".pdf", dir=ctx.settings.work_dir)
    os.close(handle)
    path = Path(name)
    try:
        await asyncio.to_thread(_copy_checked, upload, path, MAX_BYTES)
        await ctx.storage.put_file(
            file_key(ctx.settings, listing.id), path, "application/pdf", move=True
        )
    finally:
        await asyncio.to_thread(path.unlink, True)


async def has_file(ctx: AppContext, listing_id: UUID) -> bool:
    return await ctx.storage.stat(file_key(ctx.settings, listing_id)) is not None


async def download_url(
    ctx: AppContext, uow: UnitOfWork, buyer: User, order_id: UUID, line_id: UUID
) -> str:
    """A short-lived link to a digital line's file, for the buyer of a paid order only."""
    row = (
        await uow.session.execute(
            select(Order, Listing)
            .join(OrderLine, OrderLine.order_id == Order.id)
            .join(Variant, Variant.id == OrderLine.variant_id)
            .join(Listing, Listing.id == Variant.listing_id)
            .where(Order.id == order_id, OrderLine.id == line_id)
        )
    ).first()
    if row is None or row[0].buyer_id != buyer.id or row[1].kind != ListingKind.DIGITAL:
        raise DownloadNotFound()
    order, listing = row
    if order.status not in UNLOCKED:
        raise DownloadLocked(status=order.status)
    key = file_key(ctx.settings, listing.id)
    if await ctx.storage.stat(key) is None:
        raise DownloadNotReady()
    return ctx.storage.signed_url(key, ctx.settings.private_url_seconds)
