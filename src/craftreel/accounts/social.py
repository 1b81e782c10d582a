"""Sign in with Google or Apple: verify an OpenID Connect ID token against the provider's JWKS."""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from jwt.algorithms import RSAAlgorithm

from craftreel.config import Settings
from craftreel.core.errors import DomainError, NotFound


class SocialTokenInvalid(DomainError):
    """The provider's ID token is forged, expired, for someone else, or replayed."""

    status_code = 401
    code = "social_token_invalid"
    message = "We could not confirm that sign-in with the provider. Try again."


class SocialEmailUnverified(DomainError):
    """The provider has not verified the email it gave us, so we cannot link by it."""

    status_code = 403
    code = "social_email_unverified"
    message = "Your provider has not verified that email address."


@dataclass(frozen=True)
class Provider:
    name: str
    title: str
    client_id: str
    issuer: str
    jwks_url: str
    authorize_url: str


@dataclass(frozen=True)
class VerifiedIdentity:
    provider: str
    subject: str
    email: str
    email_verified: bool
    name: str | None


def configured_providers(settings: Settings) -> dict[str, Provider]:
    """Providers with a client id set; the others are not offered."""
    providers: dict[str, Provider] = {}
    if settings.google_client_id:
        providers["google"] = Provider(
            "google",
            "Google",
            settings.google_client_id,
            settings.google_issuer,
            settings.google_jwks_url,
            settings.google_authorize_url,
        )
    if settings.apple_client_id:
        providers["apple"] = Provider(
            "apple",
            "Apple",
            settings.apple_client_id,
            settings.apple_issuer,
            settings.apple_jwks_url,
            settings.apple_authorize_url,
        )
    return providers


def provider_named(settings: Settings, name: str) -> Provider:
    provider = configured_providers(settings).get(name)
    if provider is None:
        raise NotFound(f"Sign in with {name} is not set up here.")
    return provider


class JwksCache:
    """The providers' signing keys, fetched over HTTP and kept for an hour.

    An unknown key id triggers one refetch (providers rotate keys), at most once a minute.
    """

    def __init__(self, http: httpx.AsyncClient, ttl_seconds: int = 3600) -> None:
        self._http = http
        self._ttl = ttl_seconds
        self._keys: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}
        self._lock = asyncio.Lock()

    async def _fetch(self, url: str) -> dict[str, dict[str, Any]]:
        response = await self._http.get(url, timeout=10)
        response.raise_for_status()
        body = response.json()
        keys = body.get("keys") if isinstance(body, dict) else None
        if not isinstance(keys, list):
            raise ValueError("the JWKS document has no key list")
        return {k["kid"]: k for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)}

    async def key(self, url: str, kid: str) -> dict[str, Any] | None:
        async with self._lock:
            # Never fetched counts as infinitely stale: the monotonic clock starts near zero
            # at boot, so a 0.0 default would skip the first fetch for the first minute.
            fetched_at, keys = self._keys.get(url, (-math.inf, {}))
            now = time.monotonic()
            stale = now - fetched_at > self._ttl
            if stale or (kid not in keys and now - fetched_at > 60):
                try:
                    keys = await self._fetch(url)
                except (httpx.HTTPError, ValueError) as exc:
                    raise SocialTokenInvalid("The sign-in provider could not be reached.") from exc
                self._keys[url] = (now, keys)
            return keys.get(kid)


async def verify_id_token(
    provider: Provider, token: str, nonce: str, jwks: JwksCache
) -> VerifiedIdentity:
    """Check signature (RS256 against the JWKS), issuer, audience, expiry and nonce."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise SocialTokenInvalid() from exc
    if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str):
        raise SocialTokenInvalid()
    jwk = await jwks.key(provider.jwks_url, header["kid"])
    if jwk is None:
        raise SocialTokenInvalid()
    try:
        public_key = RSAAlgorithm.from_jwk(json.dumps(jwk))
        claims = jwt.decode(
            token,
            key=public_key,  # type: ignore[arg-type]
            algorithms=["RS256"],
            audience=provider.client_id,
            issuer=provider.issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            leeway=30,
        )
    except jwt.PyJWTError as exc:
        raise SocialTokenInvalid() from exc
    if not nonce or claims.get("nonce") != nonce:
        raise SocialTokenInvalid("That sign-in attempt does not match this one.")
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise SocialEmailUnverified("Your provider did not share an email address.")
    verified = claims.get("email_verified") in (True, "true")
    name = claims.get("name")
    return VerifiedIdentity(
        provider=provider.name,
        subject=str(claims["sub"]),
        email=email,
        email_verified=verified,
        name=name if isinstance(name, str) else None,
    )
