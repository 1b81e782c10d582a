"""Shoppable video: listings tagged in posts at time ranges, as the player shows them."""

from __future__ import annotations

from uuid import UUID

from craftreel.context import AppContext
from craftreel.core.db import UnitOfWork
from craftreel.posts.schemas import ProductTagOut


async def for_posts(
    ctx: AppContext, uow: UnitOfWork, post_ids: list[UUID]
) -> dict[UUID, list[ProductTagOut]]:
    """The product tags of these posts, by post (one query). Tagging is not built yet, so
    there are none."""
    return {}
