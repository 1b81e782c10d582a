"""Import every feature's models so the metadata (and Alembic) sees all tables."""

from craftreel.accounts import models as accounts_models
from craftreel.core import jobs, outbox
from craftreel.media import models as media_models

__all__ = ["accounts_models", "jobs", "media_models", "outbox"]
