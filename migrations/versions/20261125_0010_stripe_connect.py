"""stripe connect: payout account status, transfers and their reversals

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 21:15:00

Hand-written. ``payout_accounts`` learns what Stripe last said about a connected account
(charges, payouts, onboarding finished) and becomes unique by (provider, account_ref), so a
webhook finds its shop. ``payment_transfers`` holds each seller's share of a multi-shop
payment sent to their account, and the reversals of it that refunds make.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payout_accounts", schema=None) as batch_op:
        for name in ("charges_enabled", "payouts_enabled", "details_submitted"):
            batch_op.add_column(
                sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false())
            )
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(
            op.f("uq_payout_accounts_provider_account_ref"), ["provider", "account_ref"]
        )

    op.create_table(
        "payment_transfers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("shop_id", sa.Uuid(), nullable=False),
        sa.Column("refund_id", sa.Uuid(), nullable=True),
        sa.Column("transfer_id", sa.Uuid(), nullable=True),
        sa.Column("destination", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("provider_ref", sa.String(length=255), nullable=True),
        sa.Column("failure_code", sa.String(length=60), nullable=True),
        sa.Column("idempotency_key", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payment_transfers_amount_positive")),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_transfers_payment_id_payments")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_payment_transfers_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_payment_transfers_shop_id_shops")
        ),
        sa.ForeignKeyConstraint(
            ["refund_id"], ["refunds.id"], name=op.f("fk_payment_transfers_refund_id_refunds")
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"],
            ["payment_transfers.id"],
            name=op.f("fk_payment_transfers_transfer_id_payment_transfers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_transfers")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_payment_transfers_idempotency_key")),
    )
    with op.batch_alter_table("payment_transfers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payment_transfers_payment_id"), ["payment_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_payment_transfers_order_id"), ["order_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("payment_transfers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_transfers_order_id"))
        batch_op.drop_index(batch_op.f("ix_payment_transfers_payment_id"))
    op.drop_table("payment_transfers")
    with op.batch_alter_table("payout_accounts", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_payout_accounts_provider_account_ref"), type_="unique")
        batch_op.drop_column("updated_at")
        batch_op.drop_column("details_submitted")
        batch_op.drop_column("payouts_enabled")
        batch_op.drop_column("charges_enabled")
