"""Sessions looked up for bearer tokens, kept for a few seconds for read-only requests."""

from __future__ import annotations

import time
from typing import TypeVar
from uuid import UUID

from sqlalchemy import inspect

from craftreel.accounts.models import AuthSession, User
from craftreel.core.changes import Watch

T = TypeVar("T", AuthSession, User)

#: Moves when this process commits a write to people or sessions (a last-seen touch aside).
people_and_sessions = Watch("identities", frozenset({"users", "auth_sessions"}))


class IdentityCache:
    """Sessions (with their person) that bearer tokens named, for read-only requests.

    A GET with a bearer token looks its session up in the database on every request unless
    it was looked up in the last ``CRAFTREEL_AUTH_CACHE_SECONDS``; then the row read then is
    used again, still checked for revocation and expiry. Any write to people or sessions
    committed by this process empties it (so signing out, a password change or a deleted
    account take effect at once here); one made by another process takes effect for reads
    within that time. Requests that change something always read the session afresh.
    """

    def __init__(self, seconds: float, size: int = 50_000) -> None:
        self.seconds = seconds
        self.size = size
        self._found: dict[UUID, tuple[int, float, AuthSession, User]] = {}
        self._tokens: dict[str, tuple[UUID, float]] = {}

    def verified_token(self, token: str) -> UUID | None:
        """The session an access token names, if this very token's signature was checked
        before and it has not expired since (checking an HMAC signature and the claims costs
        more than the rest of a cached lookup). Unlike the session itself, this is kept
        whether or not the cache is enabled: a token's claims never change."""
        entry = self._tokens.get(token)
        if entry is None:
            return None
        session_id, expires_at = entry
        if expires_at <= time.time():
            del self._tokens[token]
            return None
        return session_id

    def keep_token(self, token: str, session_id: UUID, expires_at: float) -> None:
        if len(self._tokens) >= self.size:
            self._tokens.clear()
        self._tokens[token] = (session_id, expires_at)

    @property
    def enabled(self) -> bool:
        return self.seconds > 0

    def get(self, session_id: UUID) -> tuple[AuthSession, User] | None:
        entry = self._found.get(session_id)
        if entry is None:
            return None
        generation, expires, auth, user = entry
        if generation != people_and_sessions.generation or expires < time.monotonic():
            del self._found[session_id]
            return None
        return auth, user

    def put(self, session_id: UUID, found: tuple[AuthSession, User], generation: int) -> None:
        """Keep copies of the rows (the request's own objects expire if it rolls back)."""
        if len(self._found) >= self.size:
            self._found.clear()
        auth, user = found
        entry = (generation, time.monotonic() + self.seconds, _copy(auth), _copy(user))
        self._found[session_id] = entry


def _copy(row: T) -> T:
    """A new object with ``row``'s column values, belonging to no database session."""
    mapper = inspect(row).mapper
    copy: T = mapper.class_(**{c.key: getattr(row, c.key) for c in mapper.column_attrs})
    return copy
