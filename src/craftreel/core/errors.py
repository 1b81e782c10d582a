"""Typed domain errors: each carries an HTTP status and a stable code."""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """A rule of the product was broken; shown to the user with its code."""

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    message: ClassVar[str] = "The request could not be completed."
    #: Commit the unit of work's changes even though the request fails (e.g. a revocation).
    commit_anyway: ClassVar[bool] = False

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.detail_message = message or self.message
        self.details = details
        super().__init__(self.detail_message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {"code": self.code, "message": self.detail_message, "details": self.details}
        }


class NotAuthenticated(DomainError):
    """No valid credentials were presented."""

    status_code = 401
    code = "not_authenticated"
    message = "Sign in to continue."


class InvalidCredentials(DomainError):
    """Email or password is wrong (never says which)."""

    status_code = 401
    code = "invalid_credentials"
    message = "That email and password do not match an account."


class TokenInvalid(DomainError):
    """A token is malformed, forged, expired or already used."""

    status_code = 401
    code = "token_invalid"
    message = "This link or token is invalid or has expired."


class TokenReused(DomainError):
    """A rotated refresh token came back: the whole session is ended."""

    status_code = 401
    code = "token_reused"
    message = "This session was ended for your safety. Sign in again."
    commit_anyway = True


class PermissionDenied(DomainError):
    """Signed in, but not allowed to do this."""

    status_code = 403
    code = "permission_denied"
    message = "You are not allowed to do that."


class CsrfFailed(DomainError):
    """The form's CSRF token is missing or does not match."""

    status_code = 403
    code = "csrf_failed"
    message = "This form has expired. Reload the page and try again."


class NotFound(DomainError):
    """The thing does not exist or is not visible to this person."""

    status_code = 404
    code = "not_found"
    message = "Not found."


class Conflict(DomainError):
    """The request clashes with the current state."""

    status_code = 409
    code = "conflict"
    message = "That clashes with the current state."


class PayloadTooLarge(DomainError):
    """The body is bigger than allowed."""

    status_code = 413
    code = "payload_too_large"
    message = "That is too large."


class InvalidInput(DomainError):
    """A value passed schema validation but breaks a product rule."""

    status_code = 400
    code = "invalid_input"
    message = "Some values are not valid."


class RateLimited(DomainError):
    """Too many attempts in a short time."""

    status_code = 429
    code = "rate_limited"
    message = "Too many attempts. Wait a moment and try again."

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after
