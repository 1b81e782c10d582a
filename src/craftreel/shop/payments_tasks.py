"""Payment jobs: deliver the test provider's webhooks, reconcile payments and refunds whose
outcome we have not heard, and make sellers' transfers and their reversals."""

from __future__ import annotations

from uuid import UUID

from craftreel.context import AppContext
from craftreel.core.jobs import JobRun
from craftreel.shop import payments


def register(ctx: AppContext) -> None:
    """Payments' job handlers."""

    async def deliver_test_webhook(run: JobRun) -> None:
        await payments.deliver_test_webhook(ctx, dict(run.payload["event"]))

    async def reconcile_payment(run: JobRun) -> None:
        await payments.reconcile_payment(
            ctx, UUID(str(run.payload["payment_id"])), int(run.payload.get("round", 0))
        )

    async def reconcile_refund(run: JobRun) -> None:
        await payments.reconcile_refund(
            ctx, UUID(str(run.payload["refund_id"])), int(run.payload.get("round", 0))
        )

    async def execute_transfer(run: JobRun) -> None:
        await payments.execute_transfer(
            ctx, UUID(str(run.payload["transfer_id"])), last_attempt=run.last_attempt
        )

    ctx.jobs.register(payments.EXECUTE_TRANSFER, execute_transfer)
    ctx.jobs.register(payments.DELIVER_TEST_WEBHOOK, deliver_test_webhook)
    ctx.jobs.register(payments.RECONCILE_PAYMENT, reconcile_payment)
    ctx.jobs.register(payments.RECONCILE_REFUND, reconcile_refund)
