"""Payments' domain errors, each with a stable code."""

from __future__ import annotations

from craftreel.core.errors import Conflict, DomainError, InvalidInput, NotFound

# --- errors -----------------------------------------------------------------------------


class CheckoutNotFound(NotFound):
    """No such checkout for this buyer."""

    code = "checkout_not_found"
    message = "No such checkout."


class CheckoutNotPayable(Conflict):
    """Only an open checkout, before its hold lapses, can be paid."""

    code = "checkout_not_payable"
    message = "This checkout can no longer be paid. Check out again."


class PaymentInProgress(Conflict):
    """The checkout already has a live payment."""

    code = "payment_in_progress"
    message = "This checkout is already being paid."


class PaymentNotFound(NotFound):
    """No such payment for this buyer."""

    code = "payment_not_found"
    message = "No such payment."


class PaymentNotAwaitingAction(Conflict):
    """Only a payment that asked for a confirm step can be confirmed."""

    code = "payment_not_awaiting_action"
    message = "This payment is not waiting for a confirmation."


class ProviderNotAvailable(InvalidInput):
    """The payment provider asked for is not switched on here."""

    code = "payment_provider_not_available"
    message = "That payment provider is not available."


class InvalidCardNumber(InvalidInput):
    """The card number is not a card number."""

    code = "invalid_card_number"
    message = "That card number is not valid."


class PaymentProviderError(DomainError):
    """The payment provider failed or did not answer."""

    status_code = 502
    code = "payment_provider_unavailable"
    message = "The payment service did not answer. Try again in a moment."


class ProviderRefused(PaymentProviderError):
    """The provider answered and said no (a 4xx): asking again will not help."""

    code = "payment_provider_refused"
    message = "The payment service refused the request."


#: Failure codes of a provider that refused our credentials (see ProviderAuthFailed).
AUTHENTICATION_FAILED = "authentication_failed"
PERMISSION_DENIED = "permission_denied"


class ProviderAuthFailed(ProviderRefused):
    """The provider refused our API key (401) or its permissions (403): no retry can help
    until an operator fixes the key."""

    code = "payment_provider_auth_failed"
    message = "The payment service is not available right now. Try again later."


class PayoutsNotEnabled(Conflict):
    """A shop in the checkout has not finished setting up payouts, so it cannot be paid
    through the provider that pays sellers out."""

    code = "shop_payouts_not_enabled"
    message = "This shop cannot take card payments yet: it has not finished setting up payouts."


class PayoutsNotAvailable(Conflict):
    """Payout accounts belong to a provider with connected accounts, which is off here."""

    code = "payouts_not_available"
    message = "Payouts are not set up on this site: payments use the built-in test provider."


class WebhookSignatureInvalid(DomainError):
    """A webhook's signature is missing, forged or stale."""

    status_code = 400
    code = "webhook_signature_invalid"
    message = "The webhook signature is not valid."


class OrderNotFound(NotFound):
    """No such order for this person."""

    code = "order_not_found"
    message = "No such order."


class OrderNotRefundable(Conflict):
    """The order was never paid (or is already fully refunded)."""

    code = "order_not_refundable"
    message = "This order has no payment to refund."


class RefundTooLarge(Conflict):
    """A refund cannot be more than what is left to refund."""

    code = "refund_too_large"
    message = "That is more than is left to refund on this order."


class OrderNotCancellable(Conflict):
    """Only a paid order that has not shipped can be cancelled."""

    code = "order_not_cancellable"
    message = "This order can no longer be cancelled."


class WebhookPayloadInvalid(DomainError):
    """A genuinely signed webhook whose event we cannot read."""

    status_code = 400
    code = "webhook_payload_invalid"
    message = "The webhook event could not be read."


class TransferNotFound(NotFound):
    """No such transfer or reversal."""

    code = "transfer_not_found"
    message = "No such transfer."


class TransferNotFailed(Conflict):
    """Only a transfer that failed can be sent again."""

    code = "transfer_not_failed"
    message = "Only a failed transfer can be sent again."


class TransferNotRetryable(Conflict):
    """A failed transfer that must not be sent again as it is (see the message)."""

    code = "transfer_not_retryable"
    message = "This transfer cannot be sent again."
