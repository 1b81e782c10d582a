"""Media jobs: processing a finished upload, removing expired uploads."""

from __future__ import annotations

from craftreel.context import AppContext


def register(ctx: AppContext) -> None:
    """Media's job handlers (none until processing lands)."""
