"""Import every feature's models so the metadata (and Alembic) sees all tables."""

from craftreel.accounts import models as accounts_models
from craftreel.core import outbox

__all__ = ["accounts_models", "outbox"]
