"""Password hashing, opaque tokens stored as hashes, and signed values."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import hmac
import json
import secrets
from functools import cache
from importlib import resources
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from craftreel.core.clock import utcnow
from craftreel.core.errors import TokenInvalid


class Passwords:
    """argon2id with at least OWASP's minimum cost (m=19 MiB, t=2, p=1)."""

    def __init__(self, memory_kib: int, time_cost: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            memory_cost=memory_kib, time_cost=time_cost, parallelism=parallelism
        )
        # Verified against when the account does not exist, so both paths cost the same.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        """Blocks for the whole hashing (tens of ms): for scripts; the app uses :meth:`ahash`."""
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Blocks like :meth:`hash`; the app uses :meth:`averify`."""
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    # argon2 spends tens of milliseconds of CPU in C, with the GIL released. Run on the event
    # loop, each sign-in stalled every other request of that process for as long (seen as
    # 30-100 ms loop stalls while the feed bench's accounts signed in); in a worker thread,
    # the loop goes on serving them.

    async def ahash(self, password: str) -> str:
        return await asyncio.to_thread(self.hash, password)

    async def averify(self, stored: str | None, password: str) -> bool:
        return await asyncio.to_thread(self.verify, stored, password)

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)


@cache
def common_passwords() -> frozenset[str]:
    """The 20,000 most common passwords (shipped; see accounts/data/README.md)."""
    data = resources.files("craftreel.accounts").joinpath("data/common-passwords.txt.gz")
    text = gzip.decompress(data.read_bytes()).decode()
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def new_token(nbytes: int = 32) -> str:
    """A random URL-safe secret for a link, a cookie or a refresh token."""
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """What we store instead of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, purpose: str, payload: dict[str, Any], ttl_seconds: int) -> str:
    """A compact signed, expiring value: payload.signature (HMAC-SHA256 over purpose too)."""
    body = dict(payload, exp=int(utcnow().timestamp()) + ttl_seconds)
    raw = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(key, f"{purpose}.{raw}".encode(), hashlib.sha256).digest()
    return f"{raw}.{_b64(mac)}"


def unsign(key: bytes, purpose: str, value: str) -> dict[str, Any]:
    """The payload of a value made by ``sign``; forged, mangled or expired raises TokenInvalid."""
    try:
        raw, mac = value.split(".", 1)
        expected = hmac.new(key, f"{purpose}.{raw}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            raise TokenInvalid()
        body = json.loads(_unb64(raw))
    except (ValueError, TypeError) as exc:
        raise TokenInvalid() from exc
    if not isinstance(body, dict) or int(body.get("exp", 0)) < int(utcnow().timestamp()):
        raise TokenInvalid()
    return body
