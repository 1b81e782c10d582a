"""payments: a transfer the provider refused says when, and how often it was sent again

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-26 00:25:38

``failed_at`` is when a transfer or reversal was given up on (refused by the provider, or
unanswered after every attempt); ``retries`` counts an operator's retries, each of which
goes to the provider under a key of its own.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payment_transfers") as batch_op:
        batch_op.add_column(sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("retries", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("payment_transfers") as batch_op:
        batch_op.drop_column("retries")
        batch_op.drop_column("failed_at")
