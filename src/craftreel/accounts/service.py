"""Accounts rules: every write about a person goes through a function here."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import jwt
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from craftreel.accounts import repository as repo
from craftreel.accounts import schemas
from craftreel.accounts.avatar import process_avatar
from craftreel.accounts.identities import people_and_sessions
from craftreel.accounts.models import (
    AuthSession,
    Block,
    EmailToken,
    FollowStatus,
    MessagePolicy,
    RefreshToken,
    SessionKind,
    SocialIdentity,
    TokenPurpose,
    User,
    export_row,
)
from craftreel.accounts.social import (
    SocialEmailUnverified,
    VerifiedIdentity,
    provider_named,
    verify_id_token,
)
from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import (
    Conflict,
    DomainError,
    InvalidCredentials,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    TokenInvalid,
    TokenReused,
)
from craftreel.core.ids import uuid7
from craftreel.core.mail import Mail
from craftreel.core.pagination import decode_cursor, decode_time_cursor, page_of
from craftreel.core.ratelimit import Limit, enforce
from craftreel.core.security import common_passwords, new_token, sign, token_hash, unsign
from craftreel.core.stamps import move_on_commit
from craftreel.core.storage import remove_on_rollback

RESERVED_HANDLES = frozenset(
    {
        "admin",
        "api",
        "static",
        "media",
        "settings",
        "signin",
        "signup",
        "signout",
        "support",
        "help",
        "craftreel",
        "root",
        "system",
        "feed",
        "discover",
        "create",
        "inbox",
        "people",
    }
)


class EmailTaken(Conflict):
    """Another account already uses this email."""

    code = "email_taken"
    message = "An account with that email already exists."


class HandleTaken(Conflict):
    """Another account already uses this handle."""

    code = "handle_taken"
    message = "That handle is taken."


class WeakPassword(InvalidInput):
    """The password is too short, too long or too common."""

    code = "weak_password"
    message = "Choose a stronger password."


class EmailNotVerified(DomainError):
    """The action needs a verified email address."""

    status_code = 403
    code = "email_not_verified"
    message = "Verify your email address first."


class Blocked(NotFound):
    """Shown as not found: a blocked person must not learn the blocker exists."""


@dataclass(frozen=True)
class Client:
    """Who is asking: the device and address a session records, and rate limits key on."""

    ip: str
    device: str


@dataclass(frozen=True)
class Identity:
    """A signed-in person and the session they signed in with."""

    user: User
    session: AuthSession


# --- validation ------------------------------------------------------------------------


def normalize_email(email: str) -> str:
    return unicodedata.normalize("NFKC", email).strip().lower()


def normalize_handle(handle: str) -> str:
    return handle.strip().lstrip("@").lower()


def check_password(ctx: AppContext, password: str, *context_words: str) -> None:
    settings = ctx.settings
    if len(password) < settings.password_min_length:
        raise WeakPassword(
            f"Use at least {settings.password_min_length} characters.", field="password"
        )
    if len(password) > settings.password_max_length:
        raise WeakPassword(
            f"Use at most {settings.password_max_length} characters.", field="password"
        )
    lowered = password.lower()
    if lowered in common_passwords() or any(
        w and len(w) >= 3 and lowered == w.lower() for w in context_words
    ):
        raise WeakPassword("That password is too common or too easy to guess.", field="password")


async def check_handle_free(uow: UnitOfWork, handle: str, except_id: UUID | None = None) -> str:
    normalized = normalize_handle(handle)
    if normalized in RESERVED_HANDLES or not re.fullmatch(r"[a-z0-9][a-z0-9_.]{2,29}", normalized):
        raise HandleTaken("That handle is not available.", field="handle")
    if await repo.handle_taken(uow.session, normalized, except_id):
        raise HandleTaken(field="handle")
    return normalized


# --- tokens ----------------------------------------------------------------------------


def issue_access_token(ctx: AppContext, user_id: UUID, session_id: UUID) -> str:
    now = utcnow()
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "typ": "access",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=ctx.settings.access_token_minutes)).timestamp()),
    }
    return jwt.encode(claims, ctx.settings.signing_key, algorithm="HS256")


async def _new_refresh_token(uow: UnitOfWork, session_id: UUID) -> str:
    token = new_token()
    uow.session.add(RefreshToken(session_id=session_id, token_hash=token_hash(token)))
    await uow.session.flush()
    return token


async def token_pair(ctx: AppContext, uow: UnitOfWork, auth: AuthSession) -> schemas.TokenPair:
    return schemas.TokenPair(
        access_token=issue_access_token(ctx, auth.user_id, auth.id),
        refresh_token=await _new_refresh_token(uow, auth.id),
        expires_in=ctx.settings.access_token_minutes * 60,
        session_id=auth.id,
    )


async def _start_session(
    ctx: AppContext, uow: UnitOfWork, user: User, kind: SessionKind, client: Client
) -> tuple[AuthSession, str | None]:
    """A new session row; for the web, also the cookie value (stored only as a hash)."""
    days = (
        ctx.settings.web_session_days
        if kind == SessionKind.WEB
        else ctx.settings.refresh_token_days
    )
    cookie = new_token() if kind == SessionKind.WEB else None
    auth = AuthSession(
        id=uuid7(),
        user_id=user.id,
        kind=kind,
        web_token_hash=token_hash(cookie) if cookie else None,
        device=client.device[:200],
        ip=client.ip[:64],
        expires_at=utcnow() + timedelta(days=days),
    )
    uow.session.add(auth)
    await uow.session.flush()
    return auth, cookie


async def authenticate_access_token(uow: UnitOfWork, ctx: AppContext, token: str) -> Identity:
    """The person behind a bearer token, if the token is valid and its session still open."""
    cache = ctx.identities
    session_id = cache.verified_token(token)
    if session_id is None:
        try:
            claims = jwt.decode(
                token,
                ctx.settings.signing_key,
                algorithms=["HS256"],
                options={"require": ["exp", "sub", "sid"]},
            )
            if claims.get("typ") != "access":
                raise TokenInvalid()
            session_id = UUID(claims["sid"])
        except (jwt.PyJWTError, ValueError) as exc:
            raise NotAuthenticated("Your access token is invalid or has expired.") from exc
        cache.keep_token(token, session_id, float(claims["exp"]))
    if uow.read_only and cache.enabled:
        cached = cache.get(session_id)
        if cached is not None:
            return await _live_session(uow, cached)
    found = await repo.session_with_user(uow.session, session_id)
    if found is not None and uow.read_only and cache.enabled:
        cache.put(session_id, found, people_and_sessions.seen(uow.session.sync_session))
    return await _live_session(uow, found)


def known_identity(ctx: AppContext, token: str) -> Identity | None:
    """The person behind a bearer token, when a read-only request can tell without the
    database: the token was checked before, its session is in the identity cache, open, and
    noted as used within the last minute. Otherwise None: ask :func:`authenticate_access_token`
    (which also raises for a bad token)."""
    cache = ctx.identities
    session_id = cache.verified_token(token) if cache.enabled else None
    cached = cache.get(session_id) if session_id is not None else None
    if cached is None:
        return None
    auth, user = cached
    now = utcnow()
    if _ended(auth, now) or _unnoted(auth, now):
        return None
    return Identity(user, auth)


def _ended(auth: AuthSession, now: datetime) -> bool:
    return auth.revoked_at is not None or auth.expires_at <= now


def _unnoted(auth: AuthSession, now: datetime) -> bool:
    """Whether the session's last use is to be noted (at most once a minute)."""
    return now - auth.last_seen_at > timedelta(minutes=1)


async def authenticate_web_cookie(uow: UnitOfWork, cookie: str) -> Identity:
    return await _live_session(uow, await repo.web_session_by_hash(uow.session, token_hash(cookie)))


async def _live_session(uow: UnitOfWork, found: tuple[AuthSession, User] | None) -> Identity:
    now = utcnow()
    if found is None:
        raise NotAuthenticated()
    auth, user = found
    if _ended(auth, now):
        raise NotAuthenticated("Your session has ended. Sign in again.")
    if _unnoted(auth, now):
        if uow.read_only:
            uow.after_commit(_touch_session, uow.another(), auth.id, now)
        else:
            await repo.touch_session(uow.session, auth.id, now)
        # Noted on the object without making it dirty: a read-only unit of work must not
        # flush it (an UPDATE there can fail with "database is locked" on SQLite).
        set_committed_value(auth, "last_seen_at", now)
    return Identity(user, auth)


async def _touch_session(uow: UnitOfWork, session_id: UUID, now: datetime) -> None:
    """Note a session's last use in a unit of work of its own (after a read-only request)."""
    async with uow:
        await repo.touch_session(uow.session, session_id, now)


# --- sign up, verify, sign in ----------------------------------------------------------


async def sign_up(ctx: AppContext, uow: UnitOfWork, body: schemas.SignUp, client: Client) -> User:
    """Create an account and send the verification link."""
    await enforce(
        ctx.limiter, Limit.parse(ctx.settings.rate_limit_signup), f"signup:ip:{client.ip}"
    )
    email = normalize_email(body.email)
    check_password(ctx, body.password, body.handle, email.split("@")[0])
    if await repo.email_taken(uow.session, email):
        raise EmailTaken(field="email")
    handle = await check_handle_free(uow, body.handle)
    user = User(
        id=uuid7(),
        email=body.email.strip(),
        email_normalized=email,
        handle=body.handle.strip().lstrip("@"),
        handle_normalized=handle,
        password_hash=await ctx.passwords.ahash(body.password),
        display_name=body.display_name or body.handle,
        links=[],
    )
    uow.session.add(user)
    try:
        await uow.session.flush()
    except IntegrityError as exc:
        # Two sign-ups raced for the same email or handle; the unique index decided.
        raise EmailTaken("That email or handle was just taken.") from exc
    await send_verification(ctx, uow, user)
    return user


async def _email_link(
    ctx: AppContext, uow: UnitOfWork, user: User, purpose: TokenPurpose, email: str, ttl: timedelta
) -> str:
    now = utcnow()
    await repo.retire_email_tokens(uow.session, user.id, purpose, now)
    row = EmailToken(
        id=uuid7(), user_id=user.id, purpose=purpose, email=email, expires_at=now + ttl
    )
    uow.session.add(row)
    await uow.session.flush()
    return sign(ctx.settings.signing_key, purpose, {"tid": str(row.id)}, int(ttl.total_seconds()))


def _url(ctx: AppContext, path: str, token: str) -> str:
    return f"{str(ctx.settings.base_url).rstrip('/')}{path}?token={token}"


async def send_verification(ctx: AppContext, uow: UnitOfWork, user: User) -> None:
    ttl = timedelta(hours=ctx.settings.email_token_hours)
    token = await _email_link(ctx, uow, user, TokenPurpose.VERIFY_EMAIL, user.email_normalized, ttl)
    link = _url(ctx, "/verify", token)
    ctx.outbox.queue(
        uow,
        Mail(
            to=user.email,
            subject="Confirm your email for Craftreel",
            text=(
                f"Hi {user.display_name},\n\nConfirm your email address to finish setting up "
                f"your Craftreel account:\n\n{link}\n\nThis link works once and expires in "
                f"{ctx.settings.email_token_hours} hours. If you did not sign up, "
                "ignore this mail.\n"
            ),
        ),
    )


async def resend_verification(ctx: AppContext, uow: UnitOfWork, user: User, client: Client) -> None:
    await enforce(ctx.limiter, Limit.parse(ctx.settings.rate_limit_reset), f"verify:acct:{user.id}")
    if not user.email_verified:
        await send_verification(ctx, uow, user)


async def _consume_link(
    ctx: AppContext, uow: UnitOfWork, token: str, purpose: TokenPurpose
) -> EmailToken:
    payload = unsign(ctx.settings.signing_key, purpose, token)
    try:
        token_id = UUID(str(payload.get("tid")))
    except ValueError as exc:
        raise TokenInvalid() from exc
    row = await repo.email_token(uow.session, token_id)
    if row is None or row.purpose != purpose:
        raise TokenInvalid()
    if not await repo.use_email_token(uow.session, token_id, utcnow()):
        raise TokenInvalid("This link was already used or has expired.")
    return row


async def verify_email(ctx: AppContext, uow: UnitOfWork, token: str) -> User:
    row = await _consume_link(ctx, uow, token, TokenPurpose.VERIFY_EMAIL)
    user = await repo.user_by_id(uow.session, row.user_id)
    if user is None or user.email_normalized != row.email:
        raise TokenInvalid("This link is for an address the account no longer uses.")
    user.email_verified_at = user.email_verified_at or utcnow()
    return user


async def sign_in_password(
    ctx: AppContext,
    uow: UnitOfWork,
    email: str,
    password: str,
    kind: SessionKind,
    client: Client,
) -> tuple[User, AuthSession, str | None]:
    """Check the password and open a session; the same answer whether or not the email exists."""
    normalized = normalize_email(email)
    await enforce(
        ctx.limiter, Limit.parse(ctx.settings.rate_limit_signin_ip), f"signin:ip:{client.ip}"
    )
    await enforce(
        ctx.limiter, Limit.parse(ctx.settings.rate_limit_signin), f"signin:acct:{normalized}"
    )
    user = await repo.user_by_email(uow.session, normalized)
    matches = await ctx.passwords.averify(user.password_hash if user else None, password)
    if not matches or user is None:
        raise InvalidCredentials()
    if user.password_hash and ctx.passwords.needs_rehash(user.password_hash):
        user.password_hash = await ctx.passwords.ahash(password)
    await ctx.limiter.reset(f"signin:acct:{normalized}")
    auth, cookie = await _start_session(ctx, uow, user, kind, client)
    return user, auth, cookie


async def api_sign_in(
    ctx: AppContext, uow: UnitOfWork, body: schemas.SignIn, client: Client
) -> schemas.TokenPair:
    _, auth, _ = await sign_in_password(
        ctx,
        uow,
        body.email,
        body.password,
        SessionKind.API,
        Client(client.ip, body.device or client.device),
    )
    return await token_pair(ctx, uow, auth)


async def refresh(ctx: AppContext, uow: UnitOfWork, refresh_token: str) -> schemas.TokenPair:
    """Rotate a refresh token. A token that was already rotated ends its whole session."""
    row = await repo.refresh_token_by_hash(uow.session, token_hash(refresh_token))
    if row is None:
        raise TokenInvalid()
    found = await repo.session_with_user(uow.session, row.session_id)
    now = utcnow()
    if found is None or found[0].revoked_at is not None or found[0].expires_at <= now:
        raise TokenInvalid("This session has ended. Sign in again.")
    auth, user = found
    if row.used_at is not None or not await repo.mark_refresh_used(uow.session, row.id, now):
        await repo.revoke_sessions(uow.session, user.id, now, only=auth.id)
        raise TokenReused()
    auth.last_seen_at = now
    return await token_pair(ctx, uow, auth)


async def sign_out(uow: UnitOfWork, identity: Identity) -> None:
    await repo.revoke_sessions(uow.session, identity.user.id, utcnow(), only=identity.session.id)


async def list_sessions(uow: UnitOfWork, identity: Identity) -> list[schemas.SessionOut]:
    rows = await repo.active_sessions(uow.session, identity.user.id, utcnow())
    return [
        schemas.SessionOut(
            id=s.id,
            kind=s.kind,
            device=s.device,
            ip=s.ip,
            created_at=s.created_at,
            last_seen_at=s.last_seen_at,
            current=s.id == identity.session.id,
        )
        for s in rows
    ]


async def revoke_session(uow: UnitOfWork, identity: Identity, session_id: UUID) -> None:
    if not await repo.revoke_sessions(uow.session, identity.user.id, utcnow(), only=session_id):
        raise NotFound("No such session.")


# --- passwords and email ---------------------------------------------------------------


async def request_password_reset(
    ctx: AppContext, uow: UnitOfWork, email: str, client: Client
) -> None:
    """Mail a reset link if the account exists; say the same either way."""
    normalized = normalize_email(email)
    await enforce(
        ctx.limiter,
        Limit.parse(ctx.settings.rate_limit_reset),
        f"reset:ip:{client.ip}",
        f"reset:acct:{normalized}",
    )
    user = await repo.user_by_email(uow.session, normalized)
    if user is None:
        return
    ttl = timedelta(minutes=ctx.settings.reset_token_minutes)
    token = await _email_link(ctx, uow, user, TokenPurpose.RESET_PASSWORD, normalized, ttl)
    ctx.outbox.queue(
        uow,
        Mail(
            to=user.email,
            subject="Reset your Craftreel password",
            text=(
                f"Hi {user.display_name},\n\nSomeone (hopefully you) asked to reset the password "
                f"of your Craftreel account. Choose a new one here:\n\n"
                f"{_url(ctx, '/reset', token)}\n\nThis link works once and expires in "
                f"{ctx.settings.reset_token_minutes} minutes. If it was not you, ignore this mail; "
                "your password stays as it is.\n"
            ),
        ),
    )


async def reset_password(ctx: AppContext, uow: UnitOfWork, token: str, password: str) -> User:
    """Set a new password from an emailed link; every session ends."""
    # Check the new password before spending the link, so a weak choice can be retried.
    payload_user = await _peek_link_user(ctx, uow, token, TokenPurpose.RESET_PASSWORD)
    check_password(ctx, password, payload_user.handle, payload_user.email_normalized.split("@")[0])
    row = await _consume_link(ctx, uow, token, TokenPurpose.RESET_PASSWORD)
    user = await repo.user_by_id(uow.session, row.user_id)
    if user is None or user.email_normalized != row.email:
        raise TokenInvalid()
    user.password_hash = await ctx.passwords.ahash(password)
    # The link proved control of the mailbox, so the address counts as verified too.
    user.email_verified_at = user.email_verified_at or utcnow()
    await repo.revoke_sessions(uow.session, user.id, utcnow())
    return user


async def _peek_link_user(
    ctx: AppContext, uow: UnitOfWork, token: str, purpose: TokenPurpose
) -> User:
    payload = unsign(ctx.settings.signing_key, purpose, token)
    try:
        row = await repo.email_token(uow.session, UUID(str(payload.get("tid"))))
    except ValueError as exc:
        raise TokenInvalid() from exc
    if row is None or row.used_at is not None or row.expires_at <= utcnow():
        raise TokenInvalid("This link was already used or has expired.")
    user = await repo.user_by_id(uow.session, row.user_id)
    if user is None:
        raise TokenInvalid()
    return user


async def change_password(
    ctx: AppContext, uow: UnitOfWork, identity: Identity, current: str, new: str
) -> None:
    """Change the password; every other session ends."""
    user = identity.user
    stored = user.password_hash
    if stored is not None and not await ctx.passwords.averify(stored, current):
        raise InvalidCredentials("Your current password is not right.", field="current_password")
    check_password(ctx, new, user.handle, user.email_normalized.split("@")[0])
    user.password_hash = await ctx.passwords.ahash(new)
    await repo.revoke_sessions(uow.session, user.id, utcnow(), keep=identity.session.id)


async def request_email_change(
    ctx: AppContext, uow: UnitOfWork, identity: Identity, new_email: str, password: str
) -> None:
    """Send a confirmation link to the new address; the email changes once it is opened."""
    user = identity.user
    stored = user.password_hash
    if stored is not None and not await ctx.passwords.averify(stored, password):
        raise InvalidCredentials("Your password is not right.", field="password")
    normalized = normalize_email(new_email)
    if normalized == user.email_normalized:
        raise InvalidInput("That is already your email.", field="new_email")
    if await repo.email_taken(uow.session, normalized):
        raise EmailTaken(field="new_email")
    ttl = timedelta(hours=ctx.settings.email_token_hours)
    token = await _email_link(ctx, uow, user, TokenPurpose.CHANGE_EMAIL, normalized, ttl)
    ctx.outbox.queue(
        uow,
        Mail(
            to=new_email.strip(),
            subject="Confirm your new email for Craftreel",
            text=(
                f"Hi {user.display_name},\n\nConfirm this as the new email of your Craftreel "
                f"account @{user.handle}:\n\n{_url(ctx, '/verify-email-change', token)}\n\n"
                "Until you do, your account keeps its current email.\n"
            ),
        ),
    )
    ctx.outbox.queue(
        uow,
        Mail(
            to=user.email,
            subject="Your Craftreel email is about to change",
            text=(
                f"Hi {user.display_name},\n\nSomeone asked to change the email of @{user.handle} "
                "to another address. If it was not you, change your password now.\n"
            ),
        ),
    )


async def confirm_email_change(ctx: AppContext, uow: UnitOfWork, token: str) -> User:
    row = await _consume_link(ctx, uow, token, TokenPurpose.CHANGE_EMAIL)
    user = await repo.user_by_id(uow.session, row.user_id)
    if user is None:
        raise TokenInvalid()
    if await repo.email_taken(uow.session, row.email, except_id=user.id):
        raise EmailTaken()
    user.email = row.email
    user.email_normalized = row.email
    user.email_verified_at = utcnow()
    return user


# --- social sign-in --------------------------------------------------------------------


async def social_sign_in(
    ctx: AppContext,
    uow: UnitOfWork,
    provider_name: str,
    id_token: str,
    nonce: str,
    kind: SessionKind,
    client: Client,
) -> tuple[User, AuthSession, str | None]:
    """Verify the provider's ID token, then link to the account with that email or make one."""
    await enforce(
        ctx.limiter, Limit.parse(ctx.settings.rate_limit_signin_ip), f"signin:ip:{client.ip}"
    )
    provider = provider_named(ctx.settings, provider_name)
    found = await verify_id_token(provider, id_token, nonce, ctx.jwks)
    user = await _user_for_identity(ctx, uow, found)
    auth, cookie = await _start_session(ctx, uow, user, kind, client)
    return user, auth, cookie


async def _user_for_identity(ctx: AppContext, uow: UnitOfWork, found: VerifiedIdentity) -> User:
    linked = await repo.social_identity(uow.session, found.provider, found.subject)
    if linked is not None:
        user = await repo.user_by_id(uow.session, linked.user_id)
        if user is None:
            raise NotAuthenticated("That account has been deleted.")
        return user
    if not found.email_verified:
        raise SocialEmailUnverified()
    email = normalize_email(found.email)
    user = await repo.user_by_email(uow.session, email)
    if user is None:
        user = User(
            id=uuid7(),
            email=found.email,
            email_normalized=email,
            handle=await _free_handle_from(uow, email.split("@")[0]),
            password_hash=None,
            email_verified_at=utcnow(),
            display_name=(found.name or email.split("@")[0])[:80],
            links=[],
        )
        user.handle_normalized = user.handle.lower()
        uow.session.add(user)
        # No ORM relationship orders the inserts, so write the user before its identity.
        await uow.session.flush()
    elif not user.email_verified:
        # Someone signed up with this address but never proved it; the provider just did.
        # Guard against account pre-hijacking: the unproven password and sessions end.
        user.password_hash = None
        user.email_verified_at = utcnow()
        await repo.revoke_sessions(uow.session, user.id, utcnow())
    uow.session.add(
        SocialIdentity(user_id=user.id, provider=found.provider, subject=found.subject, email=email)
    )
    await uow.session.flush()
    return user


async def _free_handle_from(uow: UnitOfWork, seed: str) -> str:
    base = re.sub(r"[^a-z0-9_.]", "", seed.lower())[:24] or "maker"
    if not base[0].isalnum():
        base = "m" + base
    base = base.ljust(3, "0")
    candidate = base
    for n in range(1, 1000):
        if candidate not in RESERVED_HANDLES and not await repo.handle_taken(
            uow.session, candidate
        ):
            return candidate
        candidate = f"{base}{n}"
    return f"maker{uuid7().hex[-8:]}"


# --- profile and settings --------------------------------------------------------------


def avatar_url(ctx: AppContext, user: User) -> str | None:
    return ctx.storage.public_url(user.avatar_key) if user.avatar_key else None


def me(ctx: AppContext, user: User) -> schemas.Me:
    return schemas.Me(
        id=user.id,
        email=user.email,
        email_verified=user.email_verified,
        handle=user.handle,
        display_name=user.display_name,
        bio=user.bio,
        links=list(user.links or []),
        avatar_url=avatar_url(ctx, user),
        is_maker=user.is_maker,
        is_private=user.is_private,
        message_policy=user.message_policy,
        hide_from_search=user.hide_from_search,
        created_at=user.created_at,
    )


def summary(ctx: AppContext, user: User) -> schemas.PersonSummary:
    return schemas.PersonSummary(
        id=user.id,
        handle=user.handle,
        display_name=user.display_name,
        avatar_url=avatar_url(ctx, user),
        is_maker=user.is_maker,
    )


async def update_profile(
    ctx: AppContext, uow: UnitOfWork, user: User, body: schemas.ProfileUpdate
) -> User:
    if body.handle is not None and normalize_handle(body.handle) != user.handle_normalized:
        user.handle_normalized = await check_handle_free(uow, body.handle, except_id=user.id)
        user.handle = body.handle.strip().lstrip("@")
    elif body.handle is not None:
        user.handle = body.handle.strip().lstrip("@")
    if body.display_name is not None:
        user.display_name = body.display_name
    if body.bio is not None:
        user.bio = body.bio.strip()
    if body.links is not None:
        user.links = [str(link) for link in body.links]
    if body.is_maker is not None:
        user.is_maker = body.is_maker
    move_on_commit(uow, ["everyone"])  # feed pages kept anywhere may show my name
    try:
        await uow.session.flush()
    except IntegrityError as exc:
        raise HandleTaken(field="handle") from exc
    return user


async def set_avatar(ctx: AppContext, uow: UnitOfWork, user: User, data: bytes) -> User:
    """Store a cleaned avatar; the old file goes once the change has committed."""
    clean = process_avatar(data, ctx.settings.avatar_max_bytes, ctx.settings.avatar_max_pixels)
    key = f"avatars/{user.id}/{uuid7()}.webp"
    await ctx.storage.put(key, clean, "image/webp")
    remove_on_rollback(uow, ctx.storage, key)
    move_on_commit(uow, ["everyone"])
    old = user.avatar_key
    user.avatar_key = key
    if old:
        uow.after_commit(ctx.storage.delete, old)
    return user


async def remove_avatar(ctx: AppContext, uow: UnitOfWork, user: User) -> None:
    if user.avatar_key:
        uow.after_commit(ctx.storage.delete, user.avatar_key)
        user.avatar_key = None
        move_on_commit(uow, ["everyone"])


async def update_privacy(uow: UnitOfWork, user: User, body: schemas.PrivacyUpdate) -> User:
    if body.is_private is not None:
        move_on_commit(uow, ["everyone"])  # who may see my posts changes
        if user.is_private and not body.is_private:
            await _approve_all_requests(uow, user)
        user.is_private = body.is_private
    if body.message_policy is not None:
        user.message_policy = MessagePolicy(body.message_policy)
    if body.hide_from_search is not None:
        user.hide_from_search = body.hide_from_search
    return user


async def _approve_all_requests(uow: UnitOfWork, user: User) -> None:
    while True:
        pending = await repo.follow_people(
            uow.session, user.id, "followers", FollowStatus.PENDING, None, 500
        )
        if not pending:
            return
        for person, _ in pending:
            row = await repo.follow_row(uow.session, person.id, user.id)
            if row is not None:
                row.status = FollowStatus.ACTIVE
        await uow.session.flush()


async def export_data(ctx: AppContext, uow: UnitOfWork, user: User) -> dict[str, Any]:
    """Everything the accounts feature keeps about this person, as JSON."""
    rows = await repo.export_rows(uow.session, user.id)
    return {
        "format": "craftreel-export/1",
        "exported_at": utcnow().isoformat(),
        "account": me(ctx, user).model_dump(mode="json"),
        "sessions": [
            export_row(
                s, ["id", "kind", "device", "ip", "created_at", "last_seen_at", "revoked_at"]
            )
            for s in rows["sessions"]
        ],
        "following": [
            export_row(f, ["followee_id", "status", "created_at"]) for f in rows["following"]
        ],
        "followers": [
            export_row(f, ["follower_id", "status", "created_at"]) for f in rows["followers"]
        ],
        "blocks": [export_row(b, ["blocked_id", "created_at"]) for b in rows["blocks"]],
        "social_identities": [
            export_row(s, ["provider", "email", "created_at"]) for s in rows["social_identities"]
        ],
    }


async def delete_account(
    ctx: AppContext, uow: UnitOfWork, identity: Identity, password: str | None, confirm_handle: str
) -> None:
    """Remove what identifies the person, keep an anonymous tombstone, end every session."""
    user = identity.user
    if normalize_handle(confirm_handle) != user.handle_normalized:
        raise InvalidInput("Type your handle to confirm.", field="confirm_handle")
    if user.password_hash is not None and not await ctx.passwords.averify(
        user.password_hash, password or ""
    ):
        raise InvalidCredentials("Your password is not right.", field="password")
    await repo.erase_personal_rows(uow.session, user.id)
    move_on_commit(uow, ["everyone"])
    if user.avatar_key:
        uow.after_commit(ctx.storage.delete, user.avatar_key)
    tomb = user.id.hex
    user.email = f"deleted-{tomb}@deleted.invalid"
    user.email_normalized = user.email
    user.handle = f"deleted_{tomb[-20:]}"
    user.handle_normalized = user.handle
    user.password_hash = None
    user.display_name = "Deleted account"
    user.bio = ""
    user.links = []
    user.avatar_key = None
    user.is_maker = False
    user.hide_from_search = True
    user.email_verified_at = None
    user.deleted_at = utcnow()


# --- people, follows, blocks -----------------------------------------------------------


async def person_visible_to(uow: UnitOfWork, viewer: User | None, handle: str) -> User:
    """The person with ``handle``, unless missing, deleted, or blocked either way."""
    person = await repo.user_by_handle(uow.session, normalize_handle(handle))
    if person is None:
        raise NotFound("No one has that handle.")
    if (
        viewer is not None
        and viewer.id != person.id
        and await repo.is_blocked_either_way(uow.session, viewer.id, person.id)
    ):
        raise Blocked("No one has that handle.")
    return person


async def relationship(uow: UnitOfWork, viewer: User, person: User) -> schemas.Relationship:
    out = await repo.follow_row(uow.session, viewer.id, person.id)
    back = await repo.follow_row(uow.session, person.id, viewer.id)
    return schemas.Relationship(
        following="none" if out is None else out.status,
        follows_you=back is not None and back.status == FollowStatus.ACTIVE,
        blocked=await repo.has_blocked(uow.session, viewer.id, person.id),
    )


async def profile(
    ctx: AppContext, uow: UnitOfWork, viewer: User | None, handle: str
) -> schemas.PublicProfile:
    person = await person_visible_to(uow, viewer, handle)
    followers, following = await repo.follow_counts(uow.session, person.id)
    rel = await relationship(uow, viewer, person) if viewer and viewer.id != person.id else None
    return schemas.PublicProfile(
        id=person.id,
        handle=person.handle,
        display_name=person.display_name,
        bio=person.bio,
        links=list(person.links or []),
        avatar_url=avatar_url(ctx, person),
        is_maker=person.is_maker,
        is_private=person.is_private,
        followers=followers,
        following=following,
        relationship=rel,
    )


async def follow_statuses(uow: UnitOfWork, viewer: User, person_ids: set[UUID]) -> dict[UUID, str]:
    """For a list of people: which ``viewer`` follows ("active") or asked to ("pending")."""
    return await repo.follow_statuses(uow.session, viewer.id, sorted(person_ids))


async def can_see_connections(uow: UnitOfWork, viewer: User | None, person: User) -> bool:
    """A private account's followers and following show only to it and its followers."""
    if not person.is_private or (viewer is not None and viewer.id == person.id):
        return True
    if viewer is None:
        return False
    row = await repo.follow_row(uow.session, viewer.id, person.id)
    return row is not None and row.status == FollowStatus.ACTIVE


async def follow(uow: UnitOfWork, viewer: User, handle: str) -> schemas.FollowResult:
    """Follow someone; a private account gets a request to approve instead."""
    person = await person_visible_to(uow, viewer, handle)
    if person.id == viewer.id:
        raise InvalidInput("You cannot follow yourself.")
    status = FollowStatus.PENDING if person.is_private else FollowStatus.ACTIVE
    move_on_commit(uow, [viewer.id])  # my Following
    if not await repo.insert_follow(uow.session, viewer.id, person.id, status):
        existing = await repo.follow_row(uow.session, viewer.id, person.id)
        status = FollowStatus(existing.status) if existing else status
    return schemas.FollowResult(status=status.value)


async def unfollow(uow: UnitOfWork, viewer: User, handle: str) -> schemas.FollowResult:
    person = await person_visible_to(uow, viewer, handle)
    row = await repo.follow_row(uow.session, viewer.id, person.id)
    if row is not None:
        await uow.session.delete(row)
        move_on_commit(uow, [viewer.id])
    return schemas.FollowResult(status="none")


async def answer_request(uow: UnitOfWork, viewer: User, handle: str, approve: bool) -> None:
    """Approve or decline someone's request to follow me."""
    person = await person_visible_to(uow, viewer, handle)
    row = await repo.follow_row(uow.session, person.id, viewer.id)
    if row is None or row.status != FollowStatus.PENDING:
        raise NotFound("No pending request from them.")
    move_on_commit(uow, [person.id])  # their Following
    if approve:
        row.status = FollowStatus.ACTIVE
    else:
        await uow.session.delete(row)


async def remove_follower(uow: UnitOfWork, viewer: User, handle: str) -> None:
    person = await person_visible_to(uow, viewer, handle)
    row = await repo.follow_row(uow.session, person.id, viewer.id)
    if row is not None:
        await uow.session.delete(row)
        move_on_commit(uow, [person.id])


async def may_message(uow: UnitOfWork, sender: User, recipient: User) -> bool:
    """Whether ``sender`` may start a conversation with ``recipient`` (for chat).

    Blocks either way always forbid it; otherwise the recipient's "who may message me"
    setting decides: everyone, only people the recipient follows, or nobody.
    """
    if sender.id == recipient.id or not recipient.is_active:
        return False
    if await repo.is_blocked_either_way(uow.session, sender.id, recipient.id):
        return False
    if recipient.message_policy == MessagePolicy.EVERYONE:
        return True
    if recipient.message_policy == MessagePolicy.FOLLOWING:
        row = await repo.follow_row(uow.session, recipient.id, sender.id)
        return row is not None and row.status == FollowStatus.ACTIVE
    return False


async def block(uow: UnitOfWork, viewer: User, handle: str) -> None:
    """Block someone: follows both ways end; they can no longer see, follow or find me."""
    person = await repo.user_by_handle(uow.session, normalize_handle(handle))
    if person is None:
        raise NotFound("No one has that handle.")
    if person.id == viewer.id:
        raise InvalidInput("You cannot block yourself.")
    if await repo.has_blocked(uow.session, viewer.id, person.id):
        return
    await repo.delete_follows_between(uow.session, viewer.id, person.id)
    move_on_commit(uow, [viewer.id, person.id])  # neither sees the other's posts
    uow.session.add(Block(blocker_id=viewer.id, blocked_id=person.id))
    await uow.session.flush()


async def unblock(uow: UnitOfWork, viewer: User, handle: str) -> None:
    person = await repo.user_by_handle(uow.session, normalize_handle(handle))
    if person is None:
        raise NotFound("No one has that handle.")
    row = await uow.session.get(Block, (viewer.id, person.id))
    if row is not None:
        await uow.session.delete(row)
        move_on_commit(uow, [viewer.id, person.id])


async def blocked_people(
    ctx: AppContext, uow: UnitOfWork, viewer: User
) -> list[schemas.PersonSummary]:
    return [summary(ctx, p) for p in await repo.blocked_users(uow.session, viewer.id)]


async def connections(
    ctx: AppContext,
    uow: UnitOfWork,
    viewer: User | None,
    handle: str,
    direction: str,
    cursor: str | None,
    limit: int,
) -> tuple[User, list[schemas.PersonSummary], str | None]:
    person = await person_visible_to(uow, viewer, handle)
    if not await can_see_connections(uow, viewer, person):
        raise PermissionDenied("This account is private.")
    after = decode_time_cursor(cursor) if cursor else None
    rows = await repo.follow_people(
        uow.session, person.id, direction, FollowStatus.ACTIVE, after, limit
    )
    items, next_cursor = page_of(rows, limit, lambda r: (r[1], r[0].id))
    return person, [summary(ctx, u) for u, _ in items], next_cursor


async def follow_requests(
    ctx: AppContext, uow: UnitOfWork, viewer: User, cursor: str | None, limit: int
) -> tuple[list[schemas.PersonSummary], str | None]:
    after = decode_time_cursor(cursor) if cursor else None
    rows = await repo.follow_people(
        uow.session, viewer.id, "followers", FollowStatus.PENDING, after, limit
    )
    items, next_cursor = page_of(rows, limit, lambda r: (r[1], r[0].id))
    return [summary(ctx, u) for u, _ in items], next_cursor


async def search_people(
    ctx: AppContext, uow: UnitOfWork, viewer: User | None, text: str, cursor: str | None, limit: int
) -> tuple[list[schemas.PersonSummary], str | None]:
    query = text.strip().lstrip("@")
    if not query:
        return [], None
    after: tuple[str, UUID] | None = None
    if cursor:
        value, row_id = decode_cursor(cursor)
        after = (str(value), row_id)
    rows = await repo.search_users(
        uow.session, viewer.id if viewer else None, query[:80], after, limit
    )
    items, next_cursor = page_of(rows, limit, lambda u: (u.handle_normalized, u.id))
    return [summary(ctx, u) for u in items], next_cursor


async def create_admin(
    ctx: AppContext, uow: UnitOfWork, email: str, handle: str, password: str
) -> User:
    """An administrator account, verified from the start (for the command line)."""
    check_password(ctx, password, handle)
    normalized = normalize_email(email)
    if await repo.email_taken(uow.session, normalized):
        raise EmailTaken(field="email")
    user = User(
        id=uuid7(),
        email=email,
        email_normalized=normalized,
        handle=handle,
        handle_normalized=await check_handle_free(uow, handle),
        password_hash=await ctx.passwords.ahash(password),
        display_name=handle,
        links=[],
        is_admin=True,
        email_verified_at=utcnow(),
    )
    uow.session.add(user)
    await uow.session.flush()
    return user


# --- for other features' queries (posts, feeds, search) -------------------------------


def follows_clause(viewer_id: UUID, person_id: Any) -> Any:
    """SQL: ``viewer_id`` follows (approved) the person in column ``person_id``."""
    return repo.active_follow_exists(viewer_id, person_id)


def not_blocked_clause(viewer_id: UUID, person_id: Any) -> Any:
    """SQL: neither ``viewer_id`` nor the person in column ``person_id`` blocked the other."""
    return person_id.not_in(repo.blocked_either_way(viewer_id))


def followee_ids_query(viewer_id: UUID) -> Any:
    """SQL subquery: ids of the people ``viewer_id`` follows (approved)."""
    return repo.followee_ids(viewer_id)


def visible_people_clause(user_cls: Any = User) -> Any:
    """SQL: the account still exists."""
    return user_cls.deleted_at.is_(None)
