"""Feed housekeeping: keeping Discover's stored rank scores in step with engagement."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.core.stamps import move_on_commit
from craftreel.feed import repository as repo
from craftreel.posts import ranking

log = logging.getLogger(__name__)

#: Posts older than this keep their score: age outweighs any engagement by then (14 days
#: is 27 "half days" behind a new post, which would take 10^27 engagement points to make up).
RANK_REFRESH_WINDOW = timedelta(days=14)
BATCH_SIZE = 500


async def refresh_rank_scores(
    ctx: AppContext, now: datetime | None = None, batch_size: int = BATCH_SIZE
) -> int:
    """Recompute ``rank_score`` from the counters for posts published in the last 14 days,
    in batches of plain UPDATEs (each batch its own short transaction). Returns how many
    scores changed.

    Run periodically (``CRAFTREEL_RANK_REFRESH_SECONDS``). Discover pages by keyset over the
    stored scores, so pages fetched across a refresh may reorder (a post can move past the
    reader's position and repeat or be missed): that is the documented tradeoff of storing
    the score. Stability while NEW posts are published is guaranteed by the keyset, as new
    posts rank above any page already read.
    """
    since = (now or utcnow()) - RANK_REFRESH_WINDOW
    after: repo.TimeKey | None = None
    changed = 0
    while True:
        async with ctx.uow() as uow:
            batch = await repo.published_since(uow.session, since, after, batch_size)
            scores = []
            for post in batch:
                score = ranking.score(
                    post.published_at,
                    post.likes,
                    post.comments,
                    post.saves,
                    post.completions,
                    post.shares,
                )
                if score != post.rank_score:
                    scores.append((post.id, score))
            await repo.set_rank_scores(uow.session, scores)
            if scores:
                move_on_commit(uow, ["ranks"])  # kept Discover pages have the old order
        changed += len(scores)
        if len(batch) < batch_size:
            break
        after = (batch[-1].published_at, batch[-1].id)
    if changed:
        log.info("rank scores refreshed", extra={"changed": changed})
    return changed
