"""Payments: one provider interface, the built-in test provider and Stripe, and the rules that
turn what a provider says into paid orders, refunds and each seller's ledger.

Why money cannot go wrong here, whatever the timing:

- A payment attempt is a row first, committed before the provider hears of it. A partial
  unique index lets a checkout hold one live (not failed) payment, so two racing attempts
  end with one payment and a 409. The provider is then called *outside* any transaction,
  keyed by the row's id (a retried call is the same charge), and what it answered is
  recorded in a second transaction. A reconcile job, queued with the row, finishes the
  work if the process dies in between.
- Success is applied by one function in one transaction, guarded by conditional updates
  (payment open → succeeded, then checkout open → paid). The webhook is the source of
  truth; the reconcile job asks the provider when a webhook never comes. Whichever arrives
  first does the work and the others find nothing left to do: one paid order, one set of
  ledger rows (each also unique by its ``entry_key``).
- Every webhook event is a row (unique per provider and event id) written in the same
  transaction that applies it: a repeat is answered 200 and changes nothing. Provider
  states only move forward, so events arriving out of order cannot undo each other.
- A success for a checkout that lapsed meanwhile (its stock given back) takes the stock
  again if it is all still there; otherwise the payment is refunded in full, automatically.
- Refunds claim their amount with a conditional update on the payment before the provider
  is asked, so concurrent refunds can never exceed what was paid; the ledger gets its rows
  once the provider confirms. A refund the provider fails after confirming it is undone once,
  by the one conditional update that moves it succeeded → failed: rows that cancel its
  ledger rows, its payment totals back, the seller's reversal given back (or, when it had
  none, what their Stripe account is short for the order sent by a top-up).

The package: ``models`` (tables), ``schemas`` (API shapes), ``errors``, ``config``
(settings and job kinds), ``providers`` (the interface, the test provider, Stripe),
``repository`` (SQL), ``service`` (paying, settling, refunds, cancelling), ``webhooks``
and ``ledger`` (fees, the balance). Everything other modules use is re-exported here.
"""

from __future__ import annotations

from craftreel.shop.payments.config import (
    CONNECT_PROVIDERS,
    DELIVER_TEST_WEBHOOK,
    EXECUTE_TRANSFER,
    RECONCILE_PAYMENT,
    RECONCILE_REFUND,
    RECONCILE_ROUNDS,
    REFUND_RECONCILE_ROUNDS,
    WEBHOOK_TOLERANCE_SECONDS,
    PaymentSettings,
    refund_reconcile_wait,
)
from craftreel.shop.payments.connect import (
    execute_transfer,
    link_payout_account,
    payout_account,
    refresh_account,
    retry_transfer,
    start_onboarding,
    transfer_group,
)
from craftreel.shop.payments.errors import (
    CheckoutNotFound,
    CheckoutNotPayable,
    InvalidCardNumber,
    OrderNotCancellable,
    OrderNotFound,
    OrderNotRefundable,
    PaymentInProgress,
    PaymentNotAwaitingAction,
    PaymentNotFound,
    PaymentProviderError,
    PayoutsNotAvailable,
    PayoutsNotEnabled,
    ProviderNotAvailable,
    ProviderRefused,
    RefundTooLarge,
    TransferNotFailed,
    TransferNotFound,
    TransferNotRetryable,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
)
from craftreel.shop.payments.ledger import (
    balance,
    bounced_not_refunded_again,
    failure_text,
    platform_fee,
    share,
)
from craftreel.shop.payments.models import (
    IN_FLIGHT,
    MOVES_FROM,
    PAID,
    LedgerEntry,
    LedgerKind,
    Payment,
    PaymentEvent,
    PaymentStatus,
    PaymentTransfer,
    PayoutAccount,
    Refund,
    RefundReason,
    RefundStatus,
    TestProviderIntent,
    TestProviderRefund,
    TransferKind,
    TransferStatus,
)
from craftreel.shop.payments.providers import (
    providers,
)
from craftreel.shop.payments.providers.base import (
    ConnectedAccount,
    ConnectProvider,
    PaymentProvider,
    PaymentRequest,
    ProviderPayment,
    ProviderRefund,
    TransferRequest,
    WebhookEvent,
    check_signature,
    sign_webhook,
)
from craftreel.shop.payments.providers.stripe import (
    StripeProvider,
)
from craftreel.shop.payments.providers.test import (
    TEST_CARDS,
    TEST_PROVIDER_MOVES_FROM,
    TestProvider,
    card_digits,
)
from craftreel.shop.payments.schemas import (
    BalanceOut,
    LedgerEntryOut,
    OnboardingLinkOut,
    OrderMoneyOut,
    PaymentCreate,
    PaymentOut,
    PayoutAccountOut,
    RefundCreate,
    RefundOut,
    TransferOut,
    WebhookReceipt,
)
from craftreel.shop.payments.service import (
    apply_state,
    begin_payment,
    cancel_order,
    confirm_payment,
    execute_refund,
    get_payment,
    latest_payment,
    order_money,
    pay,
    payment_out,
    reconcile_payment,
    reconcile_refund,
    record_refund,
    refund_order,
    refund_out,
    submit_payment,
)
from craftreel.shop.payments.webhooks import (
    deliver_test_webhook,
    handle_webhook,
)

__all__ = [
    "CONNECT_PROVIDERS",
    "DELIVER_TEST_WEBHOOK",
    "EXECUTE_TRANSFER",
    "IN_FLIGHT",
    "MOVES_FROM",
    "PAID",
    "RECONCILE_PAYMENT",
    "RECONCILE_REFUND",
    "RECONCILE_ROUNDS",
    "REFUND_RECONCILE_ROUNDS",
    "TEST_CARDS",
    "TEST_PROVIDER_MOVES_FROM",
    "WEBHOOK_TOLERANCE_SECONDS",
    "BalanceOut",
    "CheckoutNotFound",
    "CheckoutNotPayable",
    "ConnectProvider",
    "ConnectedAccount",
    "InvalidCardNumber",
    "LedgerEntry",
    "LedgerEntryOut",
    "LedgerKind",
    "OnboardingLinkOut",
    "OrderMoneyOut",
    "OrderNotCancellable",
    "OrderNotFound",
    "OrderNotRefundable",
    "Payment",
    "PaymentCreate",
    "PaymentEvent",
    "PaymentInProgress",
    "PaymentNotAwaitingAction",
    "PaymentNotFound",
    "PaymentOut",
    "PaymentProvider",
    "PaymentProviderError",
    "PaymentRequest",
    "PaymentSettings",
    "PaymentStatus",
    "PaymentTransfer",
    "PayoutAccount",
    "PayoutAccountOut",
    "PayoutsNotAvailable",
    "PayoutsNotEnabled",
    "ProviderNotAvailable",
    "ProviderPayment",
    "ProviderRefund",
    "ProviderRefused",
    "Refund",
    "RefundCreate",
    "RefundOut",
    "RefundReason",
    "RefundStatus",
    "RefundTooLarge",
    "StripeProvider",
    "TestProvider",
    "TestProviderIntent",
    "TestProviderRefund",
    "TransferKind",
    "TransferNotFailed",
    "TransferNotFound",
    "TransferNotRetryable",
    "TransferOut",
    "TransferRequest",
    "TransferStatus",
    "WebhookEvent",
    "WebhookPayloadInvalid",
    "WebhookReceipt",
    "WebhookSignatureInvalid",
    "apply_state",
    "balance",
    "begin_payment",
    "bounced_not_refunded_again",
    "cancel_order",
    "card_digits",
    "check_signature",
    "confirm_payment",
    "deliver_test_webhook",
    "execute_refund",
    "execute_transfer",
    "failure_text",
    "get_payment",
    "handle_webhook",
    "latest_payment",
    "link_payout_account",
    "order_money",
    "pay",
    "payment_out",
    "payout_account",
    "platform_fee",
    "providers",
    "reconcile_payment",
    "reconcile_refund",
    "record_refund",
    "refresh_account",
    "refund_order",
    "refund_out",
    "refund_reconcile_wait",
    "retry_transfer",
    "share",
    "sign_webhook",
    "start_onboarding",
    "submit_payment",
    "transfer_group",
]
