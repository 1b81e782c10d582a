"""payments: a refund that failed after it had succeeded says when

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-26 03:44:50

``bounced_at`` is when the provider moved a refund it had reported succeeded to failed (the
buyer's card was closed, say): the money came back to the platform instead of reaching the
buyer, and the refund's ledger rows, payment totals and seller's reversal were undone.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("refunds") as batch_op:
        batch_op.add_column(sa.Column("bounced_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refunds") as batch_op:
        batch_op.drop_column("bounced_at")
