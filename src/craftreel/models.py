"""Import every feature's models so the metadata (and Alembic) sees all tables."""

from craftreel.accounts import models as accounts_models
from craftreel.core import idempotency, jobs, outbox
from craftreel.media import models as media_models
from craftreel.posts import models as posts_models
from craftreel.realtime import models as realtime_models
from craftreel.shop import models as shop_models
from craftreel.shop import payments as shop_payments

__all__ = [
    "accounts_models",
    "idempotency",
    "jobs",
    "media_models",
    "outbox",
    "posts_models",
    "realtime_models",
    "shop_models",
    "shop_payments",
]
