"""payments: refunds are found by the provider's reference (their webhooks)

Revision ID: 0015
Revises: 0013
Create Date: 2026-11-26 01:10:00

``refund.updated`` and ``charge.refund.updated`` events name the provider's refund; each is
looked up by ``refunds.provider_ref``.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_refunds_provider_ref", "refunds", ["provider_ref"])


def downgrade() -> None:
    op.drop_index("ix_refunds_provider_ref", table_name="refunds")
