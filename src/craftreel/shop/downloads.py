"""Digital listings: the seller attaches the file (a PDF pattern); a buyer whose order is paid
gets a short-lived signed link to it, and nobody else ever does.

Where the file lives is recorded on the listing: ``listings.digital_file_key`` is
``media/<listing id>/<random token>.pdf`` (a new token for each file, so a replaced file's
link never opens the new one) and ``digital_file_name`` the name the seller's file had. The
name cannot be guessed, nothing about it depends on the app's signing key (a new
``CRAFTREEL_SECRET_KEY`` keeps every file), and the public ``/media/`` route refuses it (no
public media object has the listing's id): only a signed URL opens it. A replaced file is
deleted once the new one is committed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from pathlib import Path
from typing import IO
from uuid import UUID

from sqlalchemy import select, update

from craftreel.accounts.models import User
from craftreel.context import AppContext
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import Conflict, DomainError, InvalidInput, NotFound, PayloadTooLarge
from craftreel.core.storage import remove_on_rollback
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


class DigitalFileChanged(Conflict):
    """Another upload replaced the file while this one was being stored."""

    code = "digital_file_changed"
    message = "The file was replaced while yours was uploading. Check it and try again."


def new_file_key(listing_id: UUID) -> str:
    """A fresh, unguessable key for one of a listing's files."""
    return f"media/{listing_id}/{secrets.token_hex(16)}.pdf"


def clean_file_name(name: str | None) -> str:
    """The seller's file name as we show it: no folders, no control characters, ends .pdf."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip() or "pattern.pdf"
    if not base.lower().endswith(".pdf"):
        base = f"{base}.pdf"
    return base if len(base) <= 200 else base[:96] + "…" + base[-100:]


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
    ctx: AppContext,
    uow: UnitOfWork,
    seller: User,
    listing_id: UUID,
    upload: IO[bytes],
    file_name: str | None = None,
) -> str:
    """Store (or replace) the file of one of the seller's digital listings; its new key.

    The new file is written under a key of its own, then recorded only if the listing still
    names the file this upload replaces (a concurrent replacement makes it a conflict, not a
    lost file); the old file is deleted once that commits, the new one at once on a failure
    here, or when the transaction rolls back or fails to commit later.
    """
    listing, _, _ = await service.own_listing(uow, seller, listing_id)
    if listing.kind != ListingKind.DIGITAL:
        raise NotADigitalListing(field="file")
    previous = listing.digital_file_key
    await asyncio.to_thread(ctx.settings.work_dir.mkdir, parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="digital-", suffix=".pdf", dir=ctx.settings.work_dir)
    os.close(handle)
    path = Path(name)
    key = new_file_key(listing.id)
    stored = False
    try:
        await asyncio.to_thread(_copy_checked, upload, path, MAX_BYTES)
        await ctx.storage.put_file(key, path, "application/pdf", move=True)
        stored = True
        # Recorded below, in the caller's transaction: if that never commits, nor does the file.
        remove_on_rollback(uow, ctx.storage, key)
        same = (
            Listing.digital_file_key.is_(None)
            if previous is None
            else Listing.digital_file_key == previous
        )
        changed = await uow.session.execute(
            update(Listing)
            .where(Listing.id == listing.id, same)
            .values(digital_file_key=key, digital_file_name=clean_file_name(file_name))
            .execution_options(synchronize_session=False)
        )
        if not changed.rowcount:  # type: ignore[attr-defined]
            raise DigitalFileChanged(field="file")
        await uow.session.refresh(listing)
    except BaseException:
        if stored:
            await ctx.storage.delete(key)
        raise
    finally:
        await asyncio.to_thread(path.unlink, True)
    if previous is not None:
        uow.after_commit(ctx.storage.delete, previous)
    return key


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
    key = listing.digital_file_key
    if key is None or await ctx.storage.stat(key) is None:
        raise DownloadNotReady()
    return ctx.storage.signed_url(key, ctx.settings.private_url_seconds)
