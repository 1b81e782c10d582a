"""Discover's order: recency and engagement in one number.

``score = published_at / HALF_DAY + log10(1 + points)``: a post ten times as engaging as
another ranks as if it were published 12.5 hours later. The score only grows with
engagement, never decays in place (age is already in the first term), so it is stored on the
post and refreshed by a periodic job rather than recomputed for every feed request.
"""

from __future__ import annotations

import math
from datetime import datetime

HALF_DAY = 45_000.0  # seconds, ~12.5 hours

WEIGHTS = {"likes": 1.0, "comments": 2.0, "saves": 3.0, "completions": 2.0, "shares": 2.0}


def points(likes: int, comments: int, saves: int, completions: int, shares: int) -> float:
    return (
        WEIGHTS["likes"] * likes
        + WEIGHTS["comments"] * comments
        + WEIGHTS["saves"] * saves
        + WEIGHTS["completions"] * completions
        + WEIGHTS["shares"] * shares
    )


def score(
    published_at: datetime, likes: int, comments: int, saves: int, completions: int, shares: int
) -> float:
    engagement = points(likes, comments, saves, completions, shares)
    return round(published_at.timestamp() / HALF_DAY + math.log10(1.0 + max(0.0, engagement)), 9)
