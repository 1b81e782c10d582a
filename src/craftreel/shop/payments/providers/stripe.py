"""Stripe over its HTTP API."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, cast
from uuid import UUID

import httpx

from craftreel.shop.payments.errors import (
    AUTHENTICATION_FAILED,
    PERMISSION_DENIED,
    PaymentProviderError,
    ProviderAuthFailed,
    ProviderRefused,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
)
from craftreel.shop.payments.models import (
    PaymentStatus,
    RefundStatus,
)
from craftreel.shop.payments.providers.base import (
    ConnectedAccount,
    OnboardingLink,
    PaymentRequest,
    ProviderPayment,
    ProviderPayout,
    ProviderRefund,
    ProviderTransfer,
    TransferRequest,
    WebhookEvent,
    check_signature,
    json_object,
    lower_headers,
    refund_key,
    uuid_or_none,
)

log = logging.getLogger(__name__)

#: Stripe's answers to a key that is wrong (401) or may not do what was asked (403), and the
#: failure codes we record for them.
AUTH_FAILURES = {401: AUTHENTICATION_FAILED, 403: PERMISSION_DENIED}


class StripeProvider:
    """Stripe PaymentIntents over its HTTP API (base URL is a setting): Connect destination
    charges with the platform's fee, separate transfers for multi-shop payments, Express
    accounts and their onboarding links, refunds, and Stripe-Signature checks."""

    name = "stripe"

    def __init__(
        self,
        http: httpx.AsyncClient,
        api_base: str,
        secret_key: str,
        webhook_secret: str,
        connect_webhook_secret: str | None = None,
    ) -> None:
        self._http = http
        self._base = api_base.rstrip("/")
        self._key = secret_key
        # A Connect endpoint (events on sellers' accounts) is signed with a secret of its own.
        self._webhook_secrets = [webhook_secret]
        if connect_webhook_secret and connect_webhook_secret != webhook_secret:
            self._webhook_secrets.append(connect_webhook_secret)

    async def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        form: dict[str, str] = {
            "amount": str(request.amount),
            "currency": request.currency.lower(),
            "payment_method": request.payment_method,
            "payment_method_types[]": "card",
            "confirm": "true",
            "metadata[payment_id]": str(request.payment_id),
            "metadata[checkout_id]": str(request.checkout_id),
        }
        if request.destination is not None:
            form["transfer_data[destination]"] = request.destination
            form["application_fee_amount"] = str(request.application_fee or 0)
        if request.transfer_group is not None:
            form["transfer_group"] = request.transfer_group
        intent = await self._call(
            "POST", "/v1/payment_intents", form, idempotency_key=request.idempotency_key
        )
        return self._payment(intent)

    async def confirm(self, ref: str) -> ProviderPayment:
        intent = await self._call(
            "POST", f"/v1/payment_intents/{ref}/confirm", {}, idempotency_key=f"confirm-{ref}"
        )
        return self._payment(intent)

    async def retrieve(self, ref: str) -> ProviderPayment:
        return self._payment(await self._call("GET", f"/v1/payment_intents/{ref}"))

    async def find(self, payment_id: UUID) -> ProviderPayment | None:
        # Stripe's search lags writes by up to a minute; the reconcile job runs minutes later.
        found = await self._call(
            "GET",
            "/v1/payment_intents/search",
            params={"query": f"metadata['payment_id']:'{payment_id}'"},
        )
        data = found.get("data") or []
        return self._payment(data[0]) if data else None

    async def refund(
        self, ref: str, amount: int, refund_id: UUID, *, reverse_transfer: bool
    ) -> ProviderRefund:
        form = {
            "payment_intent": ref,
            "amount": str(amount),
            # Lets the refund's events find it even if this answer is lost.
            "metadata[refund_id]": str(refund_id),
        }
        if reverse_transfer:
            # The seller gives back their share and we give back our fee, pro rata.
            form["reverse_transfer"] = "true"
            form["refund_application_fee"] = "true"
        try:
            refund = await self._call(
                "POST", "/v1/refunds", form, idempotency_key=refund_key(refund_id)
            )
        except ProviderRefused as exc:
            code = exc.details.get("provider_code")
            return ProviderRefund(
                None, RefundStatus.FAILED, amount, str(code or "refused"), refund_id
            )
        return self._refund(refund)

    async def retrieve_refund(self, ref: str) -> ProviderRefund:
        return self._refund(await self._call("GET", f"/v1/refunds/{ref}"))

    @staticmethod
    def _refund(refund: dict[str, Any]) -> ProviderRefund:
        """A Stripe refund in our words: ``pending`` (and ``requires_action``) until it is
        ``succeeded``, or ``failed``/``canceled`` — both of which gave nothing back."""
        stripe_status = str(refund.get("status"))
        status = {
            "succeeded": RefundStatus.SUCCEEDED,
            "failed": RefundStatus.FAILED,
            "canceled": RefundStatus.FAILED,
        }.get(stripe_status, RefundStatus.PENDING)
        failure_code = None
        if status == RefundStatus.FAILED:
            failure_code = str(refund.get("failure_reason") or stripe_status)
        metadata = refund.get("metadata") or {}
        return ProviderRefund(
            ref=str(refund["id"]),
            status=status,
            amount=int(refund["amount"]),
            failure_code=failure_code,
            refund_id=uuid_or_none(metadata.get("refund_id")),
        )

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        header = lower_headers(headers).get("stripe-signature")
        now = time.time()
        for n, secret in enumerate(self._webhook_secrets):
            try:
                check_signature(header, secret, body, now)
                break
            except WebhookSignatureInvalid:
                if n == len(self._webhook_secrets) - 1:
                    raise
        event = json_object(body)
        try:
            data = event.get("data")
            found = data.get("object") if isinstance(data, dict) else None
            obj: dict[str, Any] | None = found if isinstance(found, dict) else None
            kind = obj.get("object") if obj else None
            account_ref = event.get("account")
            return WebhookEvent(
                id=str(event["id"]),
                type=str(event["type"]),
                payment=self._payment(obj) if obj and kind == "payment_intent" else None,
                account_ref=str(account_ref) if account_ref else None,
                account=self._account(obj) if obj and kind == "account" else None,
                payout=ProviderPayout(
                    ref=str(obj["id"]),
                    amount=int(obj["amount"]),
                    currency=str(obj["currency"]).upper(),
                    status=str(obj.get("status")),
                )
                if obj and kind == "payout"
                else None,
                refund=self._refund(obj) if obj and kind == "refund" else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WebhookPayloadInvalid() from exc

    # --- Connect ---

    async def create_account(
        self, shop_id: UUID, country: str, idempotency_key: str
    ) -> ConnectedAccount:
        form = {
            "type": "express",
            "country": country,
            "capabilities[card_payments][requested]": "true",
            "capabilities[transfers][requested]": "true",
            "metadata[shop_id]": str(shop_id),
        }
        account = await self._call("POST", "/v1/accounts", form, idempotency_key=idempotency_key)
        return self._account(account)

    async def retrieve_account(self, ref: str) -> ConnectedAccount:
        return self._account(await self._call("GET", f"/v1/accounts/{ref}"))

    async def onboarding_link(self, ref: str, refresh_url: str, return_url: str) -> OnboardingLink:
        link = await self._call(
            "POST",
            "/v1/account_links",
            {
                "account": ref,
                "refresh_url": refresh_url,
                "return_url": return_url,
                "type": "account_onboarding",
            },
        )
        expires = link.get("expires_at")
        return OnboardingLink(url=str(link["url"]), expires_at=int(expires) if expires else None)

    async def create_transfer(self, request: TransferRequest) -> ProviderTransfer:
        form = {
            "amount": str(request.amount),
            "currency": request.currency.lower(),
            "destination": request.destination,
            **{f"metadata[{k}]": v for k, v in request.metadata.items()},
        }
        if request.transfer_group is not None:
            form["transfer_group"] = request.transfer_group
        if request.source_charge is not None:
            form["source_transaction"] = request.source_charge
        transfer = await self._call(
            "POST", "/v1/transfers", form, idempotency_key=request.idempotency_key
        )
        return ProviderTransfer(ref=str(transfer["id"]), amount=int(transfer["amount"]))

    async def reverse_transfer(
        self, ref: str, amount: int, idempotency_key: str, metadata: Mapping[str, str]
    ) -> ProviderTransfer:
        form = {"amount": str(amount), **{f"metadata[{k}]": v for k, v in metadata.items()}}
        reversal = await self._call(
            "POST", f"/v1/transfers/{ref}/reversals", form, idempotency_key=idempotency_key
        )
        return ProviderTransfer(ref=str(reversal["id"]), amount=int(reversal["amount"]))

    async def find_transfer(self, transfer_group: str, order_id: str) -> ProviderTransfer | None:
        # A checkout's group holds one transfer per shop in it: one page is all of them.
        found = await self._call(
            "GET", "/v1/transfers", params={"transfer_group": transfer_group, "limit": "100"}
        )
        for transfer in found.get("data") or []:
            metadata = transfer.get("metadata") or {}
            # A restore (a reversal given back) carries the order too, and the reversal's id;
            # a top-up carries its kind. The order's own transfer carries neither.
            if (
                metadata.get("order_id") == order_id
                and "reversal_id" not in metadata
                and metadata.get("kind", "transfer") == "transfer"
            ):
                return ProviderTransfer(ref=str(transfer["id"]), amount=int(transfer["amount"]))
        return None

    async def find_reversal(self, ref: str, refund_id: str) -> ProviderTransfer | None:
        # A transfer is reversed once per refund (and a few times in all): one page holds them.
        found = await self._call("GET", f"/v1/transfers/{ref}/reversals", params={"limit": "100"})
        for reversal in found.get("data") or []:
            if (reversal.get("metadata") or {}).get("refund_id") == refund_id:
                return ProviderTransfer(ref=str(reversal["id"]), amount=int(reversal["amount"]))
        return None

    @staticmethod
    def _account(account: dict[str, Any]) -> ConnectedAccount:
        return ConnectedAccount(
            ref=str(account["id"]),
            charges_enabled=bool(account.get("charges_enabled")),
            payouts_enabled=bool(account.get("payouts_enabled")),
            details_submitted=bool(account.get("details_submitted")),
        )

    async def _call(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        *,
        params: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._key}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        try:
            response = await self._http.request(
                method, f"{self._base}{path}", data=form, params=params, headers=headers
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PaymentProviderError() from exc
        if not isinstance(body, dict):
            raise PaymentProviderError()
        if response.status_code >= 400:
            error = body.get("error") or {}
            # A declined card still makes a PaymentIntent: it comes back with the error.
            if isinstance(error, dict) and isinstance(error.get("payment_intent"), dict):
                return cast(dict[str, Any], error["payment_intent"])
            if response.status_code in AUTH_FAILURES:
                # Our key is wrong or may not do this: no retry can fix it, a person must.
                log.error(
                    "stripe refused our API key: check CRAFTREEL_STRIPE_SECRET_KEY",
                    extra={"path": path, "status": response.status_code},
                )
                raise ProviderAuthFailed(provider_code=AUTH_FAILURES[response.status_code])
            log.warning(
                "stripe refused a request",
                extra={"path": path, "status": response.status_code, "error": str(error)[:300]},
            )
            code = error.get("code") if isinstance(error, dict) else None
            if response.status_code < 500 and response.status_code not in (409, 429):
                # Stripe looked at the request and said no: asking again will not help.
                raise ProviderRefused(provider_code=code)
            raise PaymentProviderError(provider_code=code)
        return body

    @staticmethod
    def _payment(intent: dict[str, Any]) -> ProviderPayment:
        stripe_status = str(intent.get("status"))
        error = intent.get("last_payment_error") or {}
        failure_code: str | None = None
        if stripe_status == "requires_payment_method" and error:
            status = PaymentStatus.FAILED
            failure_code = error.get("decline_code") or error.get("code") or "card_declined"
        elif stripe_status == "canceled":
            status, failure_code = PaymentStatus.FAILED, "canceled"
        else:
            status = {
                "succeeded": PaymentStatus.SUCCEEDED,
                "processing": PaymentStatus.PROCESSING,
                # We never capture by hand: an authorised payment is on its way.
                "requires_capture": PaymentStatus.PROCESSING,
                "requires_action": PaymentStatus.REQUIRES_ACTION,
            }.get(stripe_status, PaymentStatus.REQUIRES_PAYMENT)
        metadata = intent.get("metadata") or {}
        return ProviderPayment(
            ref=str(intent["id"]),
            status=status,
            amount=int(intent.get("amount", 0)),
            currency=str(intent.get("currency", "")).upper(),
            failure_code=failure_code,
            payment_id=uuid_or_none(metadata.get("payment_id")),
            charge_ref=str(intent["latest_charge"]) if intent.get("latest_charge") else None,
        )
