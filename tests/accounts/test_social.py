"""Signing in with Google or Apple: ID tokens checked against the provider's JWKS over HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import func, select

from craftreel.accounts.models import SocialIdentity, User
from craftreel.config import Settings
from craftreel.context import AppContext
from tests.conftest import PASSWORD, Outbox
from tests.factories import sign_in, sign_up

NONCE = "nonce-7f3a9c21d4"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True)
class IdentityProvider:
    """A stand-in for Google or Apple: it signs ID tokens with a key its JWKS publishes."""

    name: str
    issuer: str
    client_id: str
    kid: str
    key: rsa.RSAPrivateKey
    jwks_url: str
    verified: bool | str  # Apple sends the claim as the string "true"
    unverified: bool | str

    def claims(self, sub: str, email: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.client_id,
            "sub": sub,
            "iat": now,
            "exp": now + 600,
            "nonce": NONCE,
            "email": email,
            "email_verified": self.verified,
        }
        claims.update(overrides)
        return claims

    def id_token(self, sub: str, email: str, **overrides: Any) -> str:
        """A genuine ID token, as the provider would hand it to the app."""
        return jwt.encode(
            self.claims(sub, email, **overrides),
            self.key,
            algorithm="RS256",
            headers={"kid": self.kid},
        )

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


@pytest.fixture(scope="module")
def providers() -> Iterator[dict[str, IdentityProvider]]:
    """Google and Apple stand-ins whose JWKS documents are served from 127.0.0.1."""
    keys = {"google": ("google-2024-1", _new_key()), "apple": ("apple-W6WcOKB", _new_key())}
    documents = {
        f"/{name}/keys": json.dumps({"keys": [_jwk(key, kid)]}).encode()
        for name, (kid, key) in keys.items()
    }

    class JwksHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = documents.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body or b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), JwksHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield {
            "google": IdentityProvider(
                "google",
                f"{base}/google",
                "craftreel-web.apps.example",
                *keys["google"],
                f"{base}/google/keys",
                verified=True,
                unverified=False,
            ),
            "apple": IdentityProvider(
                "apple",
                f"{base}/apple",
                "org.craftreel.app",
                *keys["apple"],
                f"{base}/apple/keys",
                verified="true",
                unverified="false",
            ),
        }
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def configured() -> tuple[str, ...]:
    """Which providers the app has a client id for (a test may parametrize this)."""
    return ("google", "apple")


@pytest.fixture
def settings(
    settings: Settings, providers: dict[str, IdentityProvider], configured: tuple[str, ...]
) -> Settings:
    """The suite's settings, with Google and Apple pointed at the local stand-ins."""
    update: dict[str, Any] = {}
    for name, idp in providers.items():
        update[f"{name}_client_id"] = idp.client_id if name in configured else None
        update[f"{name}_issuer"] = idp.issuer
        update[f"{name}_jwks_url"] = idp.jwks_url
    return settings.model_copy(update=update)


async def _social(
    client: httpx.AsyncClient, provider: str, id_token: str, nonce: str = NONCE
) -> httpx.Response:
    return await client.post(
        f"/api/v1/auth/social/{provider}", json={"id_token": id_token, "nonce": nonce}
    )


async def _me(client: httpx.AsyncClient, access_token: str) -> dict[str, Any]:
    response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {access_token}"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _accounts(ctx: AppContext) -> tuple[int, int]:
    """How many accounts and linked social identities the database holds."""
    async with ctx.uow() as uow:
        users = await uow.session.scalar(select(func.count()).select_from(User))
        links = await uow.session.scalar(select(func.count()).select_from(SocialIdentity))
    return int(users or 0), int(links or 0)


# --- accepted tokens ----------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["google", "apple"])
async def test_first_sign_in_creates_a_verified_account(
    client: httpx.AsyncClient,
    ctx: AppContext,
    providers: dict[str, IdentityProvider],
    provider: str,
) -> None:
    # given a person new to Craftreel, signed in at the provider
    idp = providers[provider]
    id_token = idp.id_token("000123.wren", "Wren@Example.org", name="Wren Hollis")

    # when the app hands us the provider's ID token
    response = await _social(client, provider, id_token)

    # then an account with a verified email exists, and the tokens we got work
    assert response.status_code == 200, response.text
    tokens = response.json()
    me = await _me(client, tokens["access_token"])
    assert me["email"] == "Wren@Example.org"
    assert me["email_verified"] is True
    assert me["display_name"] == "Wren Hollis"
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    assert await _accounts(ctx) == (1, 1)


@pytest.mark.parametrize("provider", ["google", "apple"])
async def test_signing_in_again_with_the_same_subject_reaches_the_same_account(
    client: httpx.AsyncClient,
    ctx: AppContext,
    providers: dict[str, IdentityProvider],
    provider: str,
) -> None:
    # given someone who already signed in once with the provider
    idp = providers[provider]
    first = await _social(client, provider, idp.id_token("000777.ash", "ash@example.org"))
    assert first.status_code == 200, first.text
    account = await _me(client, first.json()["access_token"])

    # when they sign in again, even after changing their email at the provider
    again = await _social(client, provider, idp.id_token("000777.ash", "ash.new@example.org"))

    # then they are in the same account, and no second one was made
    assert again.status_code == 200, again.text
    assert (await _me(client, again.json()["access_token"]))["id"] == account["id"]
    assert await _accounts(ctx) == (1, 1)


@pytest.mark.parametrize("provider", ["google", "apple"])
async def test_a_verified_email_links_to_the_existing_password_account(
    client: httpx.AsyncClient,
    ctx: AppContext,
    outbox: Outbox,
    providers: dict[str, IdentityProvider],
    provider: str,
) -> None:
    # given a password account whose email is verified
    mara = await sign_up(client, "mara", outbox)
    password_account = await _me(client, mara.access_token)

    # when Mara signs in with the provider, which vouches for the same address
    id_token = providers[provider].id_token("sub-mara-42", "MARA@example.org")
    response = await _social(client, provider, id_token)

    # then she is in her existing account, and her password still works
    assert response.status_code == 200, response.text
    linked = await _me(client, response.json()["access_token"])
    assert linked["id"] == password_account["id"]
    assert linked["handle"] == "mara"
    assert await _accounts(ctx) == (1, 1)
    await sign_in(client, "mara@example.org", "mara", PASSWORD)


@pytest.mark.parametrize("provider", ["google", "apple"])
async def test_an_unverified_squatter_loses_the_account_to_the_provens_owner(
    client: httpx.AsyncClient,
    ctx: AppContext,
    providers: dict[str, IdentityProvider],
    provider: str,
) -> None:
    # given someone signed up with Mara's address but never verified it
    squatter = await sign_up(client, "squatter")
    assert squatter.email == "squatter@example.org"

    # when the real owner of that address signs in with the provider
    id_token = providers[provider].id_token("sub-owner-1", "squatter@example.org")
    response = await _social(client, provider, id_token)
    assert response.status_code == 200, response.text

    # then the unproven password no longer works and the squatter's sessions are over
    assert (await client.get("/api/v1/me", headers=squatter.auth)).status_code == 401
    refused = await client.post(
        "/api/v1/auth/signin", json={"email": squatter.email, "password": PASSWORD}
    )
    assert refused.status_code == 401
    owner = await _me(client, response.json()["access_token"])
    assert owner["email_verified"] is True


# --- refused tokens -----------------------------------------------------------------------

# Each makes (id_token, nonce) from the provider signed into and the other provider.
Forgery = Callable[[IdentityProvider, IdentityProvider], tuple[str, str]]


def _unsigned(idp: IdentityProvider, other: IdentityProvider) -> tuple[str, str]:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": idp.kid}).encode())
    payload = _b64(json.dumps(idp.claims("sub-mallory", "victim@example.org")).encode())
    return f"{header}.{payload}.", NONCE


def _hmac_with_public_key(idp: IdentityProvider, other: IdentityProvider) -> tuple[str, str]:
    # The classic algorithm confusion: HS256 "signed" with the provider's public key as secret.
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": idp.kid}).encode())
    payload = _b64(json.dumps(idp.claims("sub-mallory", "victim@example.org")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(idp.public_pem(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}", NONCE


def _signed_by_stranger(kid: str | None = None) -> Forgery:
    def make(idp: IdentityProvider, other: IdentityProvider) -> tuple[str, str]:
        token = jwt.encode(
            idp.claims("sub-mallory", "victim@example.org"),
            _new_key(),
            algorithm="RS256",
            headers={"kid": kid or idp.kid},
        )
        return token, NONCE

    return make


def _genuine(**overrides: Any) -> Forgery:
    def make(idp: IdentityProvider, other: IdentityProvider) -> tuple[str, str]:
        return idp.id_token("sub-mallory", "victim@example.org", **overrides), NONCE

    return make


def _replayed_with_other_nonce(idp: IdentityProvider, other: IdentityProvider) -> tuple[str, str]:
    return idp.id_token("sub-mallory", "victim@example.org"), "nonce-of-another-attempt"


def _from_the_other_provider(idp: IdentityProvider, other: IdentityProvider) -> tuple[str, str]:
    # Genuine, but minted by the other provider: its issuer, its audience, its key.
    return other.id_token("sub-mallory", "victim@example.org"), NONCE


REFUSED: dict[str, Forgery] = {
    "forged with another key": _signed_by_stranger(),
    "unknown kid": _signed_by_stranger("kid-nobody-published"),
    "expired": _genuine(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
    "wrong audience": _genuine(aud="someone-elses-client-id"),
    "wrong issuer": _genuine(iss="https://accounts.evil.example"),
    "wrong nonce": _replayed_with_other_nonce,
    "no nonce in token": _genuine(nonce=None),
    "alg none": _unsigned,
    "HS256 with the public key": _hmac_with_public_key,
    "issued by the other provider": _from_the_other_provider,
    "not a JWT": lambda idp, other: ("definitely-not-a-jwt", NONCE),
}


@pytest.mark.parametrize("provider", ["google", "apple"])
@pytest.mark.parametrize("case", list(REFUSED))
async def test_a_bad_token_is_refused_and_creates_no_account(
    client: httpx.AsyncClient,
    ctx: AppContext,
    providers: dict[str, IdentityProvider],
    provider: str,
    case: str,
) -> None:
    # given a token that is not a genuine, fresh one for this app and this sign-in attempt
    other = providers["apple" if provider == "google" else "google"]
    id_token, nonce = REFUSED[case](providers[provider], other)

    # when someone presents it
    response = await _social(client, provider, id_token, nonce)

    # then it is refused with a stable code, and no account or link was made
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "social_token_invalid"
    assert "access_token" not in response.json()
    assert await _accounts(ctx) == (0, 0)


async def test_an_expired_token_is_refused_even_for_a_linked_account(
    client: httpx.AsyncClient, providers: dict[str, IdentityProvider]
) -> None:
    # given someone who has signed in with Google before
    google = providers["google"]
    first = await _social(client, "google", google.id_token("sub-finch", "finch@example.org"))
    assert first.status_code == 200, first.text

    # when an old token of theirs turns up later
    stale = google.id_token(
        "sub-finch", "finch@example.org", iat=int(time.time()) - 7200, exp=int(time.time()) - 3600
    )
    response = await _social(client, "google", stale)

    # then it does not sign anyone in
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "social_token_invalid"


@pytest.mark.parametrize("provider", ["google", "apple"])
async def test_an_unverified_email_is_not_trusted_for_a_new_account(
    client: httpx.AsyncClient,
    ctx: AppContext,
    providers: dict[str, IdentityProvider],
    provider: str,
) -> None:
    # given a provider account whose email the provider has not verified
    idp = providers[provider]
    id_token = idp.id_token("sub-newt", "newt@example.org", email_verified=idp.unverified)

    # when it is used to sign in
    response = await _social(client, provider, id_token)

    # then no account is made from it
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "social_email_unverified"
    assert await _accounts(ctx) == (0, 0)


@pytest.mark.parametrize("provider", ["google", "apple"])
async def test_an_unverified_email_does_not_take_over_an_existing_account(
    client: httpx.AsyncClient,
    ctx: AppContext,
    outbox: Outbox,
    providers: dict[str, IdentityProvider],
    provider: str,
) -> None:
    # given Mara's password account, and a provider account claiming her address unverified
    await sign_up(client, "mara", outbox)
    idp = providers[provider]
    id_token = idp.id_token("sub-mallory", "mara@example.org", email_verified=idp.unverified)

    # when that provider account is used to sign in
    response = await _social(client, provider, id_token)

    # then it is refused and not linked to Mara's account
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "social_email_unverified"
    assert await _accounts(ctx) == (1, 0)


@pytest.mark.parametrize("configured", [("google",)])
async def test_a_provider_that_is_not_set_up_is_not_found(
    client: httpx.AsyncClient, ctx: AppContext, providers: dict[str, IdentityProvider]
) -> None:
    # given an app with Google set up and Apple not
    apple_token = providers["apple"].id_token("sub-apple", "robin@example.org")

    # when someone signs in with Apple, or with a provider we never offer
    apple = await _social(client, "apple", apple_token)
    unknown = await _social(client, "myspace", apple_token)

    # then neither exists here, and no account was made
    assert apple.status_code == 404
    assert apple.json()["error"]["code"] == "not_found"
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    assert await _accounts(ctx) == (0, 0)
