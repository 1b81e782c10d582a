"""Accounts JSON API under /api/v1."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query, UploadFile

from craftreel.accounts import schemas, service
from craftreel.accounts.deps import ApiIdentity, ApiOptionalUser, ApiUser, ClientInfo
from craftreel.accounts.models import SessionKind
from craftreel.core.pagination import Page
from craftreel.deps import Ctx, Uow

router = APIRouter(prefix="/api/v1", tags=["accounts"])

PageLimit = Query(default=20, ge=1, le=100)


async def read_upload(file: UploadFile, limit: int) -> bytes:
    """Read at most ``limit + 1`` bytes: enough to tell an oversized file, never more."""
    return await file.read(limit + 1)


@router.post("/auth/signup", status_code=201)
async def sign_up(body: schemas.SignUp, ctx: Ctx, uow: Uow, client: ClientInfo) -> schemas.Me:
    """Create an account; a verification link is mailed."""
    return service.me(ctx, await service.sign_up(ctx, uow, body, client))


@router.post("/auth/verify-email")
async def verify_email(body: schemas.EmailTokenBody, ctx: Ctx, uow: Uow) -> schemas.Me:
    return service.me(ctx, await service.verify_email(ctx, uow, body.token))


@router.post("/auth/verify-email/resend", status_code=202)
async def resend_verification(
    identity: ApiIdentity, ctx: Ctx, uow: Uow, client: ClientInfo
) -> None:
    await service.resend_verification(ctx, uow, identity.user, client)


@router.post("/auth/signin")
async def sign_in(
    body: schemas.SignIn, ctx: Ctx, uow: Uow, client: ClientInfo
) -> schemas.TokenPair:
    """Exchange email and password for an access token (15 min) and a refresh token."""
    return await service.api_sign_in(ctx, uow, body, client)


@router.post("/auth/social/{provider}")
async def social_sign_in(
    provider: str, body: schemas.SocialSignIn, ctx: Ctx, uow: Uow, client: ClientInfo
) -> schemas.TokenPair:
    """Sign in with a Google or Apple ID token (and the nonce the app put in it)."""
    _, auth, _ = await service.social_sign_in(
        ctx,
        uow,
        provider,
        body.id_token,
        body.nonce,
        SessionKind.API,
        service.Client(client.ip, body.device or client.device),
    )
    return await service.token_pair(ctx, uow, auth)


@router.post("/auth/refresh")
async def refresh(body: schemas.RefreshRequest, ctx: Ctx, uow: Uow) -> schemas.TokenPair:
    """Rotate the refresh token. Presenting a rotated one ends the session."""
    return await service.refresh(ctx, uow, body.refresh_token)


@router.post("/auth/signout", status_code=204)
async def sign_out(identity: ApiIdentity, uow: Uow) -> None:
    await service.sign_out(uow, identity)


@router.post("/auth/password/forgot", status_code=202)
async def forgot_password(
    body: schemas.ForgotPassword, ctx: Ctx, uow: Uow, client: ClientInfo
) -> None:
    """Mail a reset link if the account exists (the answer is the same either way)."""
    await service.request_password_reset(ctx, uow, body.email, client)


@router.post("/auth/password/reset", status_code=204)
async def reset_password(body: schemas.ResetPassword, ctx: Ctx, uow: Uow) -> None:
    await service.reset_password(ctx, uow, body.token, body.password)


@router.post("/auth/confirm-email-change")
async def confirm_email_change(body: schemas.EmailTokenBody, ctx: Ctx, uow: Uow) -> schemas.Me:
    return service.me(ctx, await service.confirm_email_change(ctx, uow, body.token))


@router.get("/me")
async def get_me(user: ApiUser, ctx: Ctx) -> schemas.Me:
    return service.me(ctx, user)


@router.patch("/me/profile")
async def update_profile(
    body: schemas.ProfileUpdate, user: ApiUser, ctx: Ctx, uow: Uow
) -> schemas.Me:
    return service.me(ctx, await service.update_profile(ctx, uow, user, body))


@router.put("/me/avatar")
async def set_avatar(file: UploadFile, user: ApiUser, ctx: Ctx, uow: Uow) -> schemas.Me:
    """Upload an avatar (JPEG, PNG, WebP or GIF); it is cropped square and stripped of EXIF."""
    data = await read_upload(file, ctx.settings.avatar_max_bytes)
    return service.me(ctx, await service.set_avatar(ctx, uow, user, data))


@router.delete("/me/avatar")
async def remove_avatar(user: ApiUser, ctx: Ctx, uow: Uow) -> schemas.Me:
    await service.remove_avatar(ctx, uow, user)
    return service.me(ctx, user)


@router.patch("/me/privacy")
async def update_privacy(
    body: schemas.PrivacyUpdate, user: ApiUser, ctx: Ctx, uow: Uow
) -> schemas.Me:
    return service.me(ctx, await service.update_privacy(uow, user, body))


@router.post("/me/password", status_code=204)
async def change_password(
    body: schemas.ChangePassword, identity: ApiIdentity, ctx: Ctx, uow: Uow
) -> None:
    """Change the password; every other session is signed out."""
    await service.change_password(ctx, uow, identity, body.current_password, body.new_password)


@router.post("/me/email", status_code=202)
async def change_email(
    body: schemas.ChangeEmail, identity: ApiIdentity, ctx: Ctx, uow: Uow
) -> None:
    """Ask to change the email; it changes once the link mailed to the new address is opened."""
    await service.request_email_change(ctx, uow, identity, body.new_email, body.password)


@router.get("/me/export")
async def export_data(user: ApiUser, ctx: Ctx, uow: Uow) -> dict[str, Any]:
    return await service.export_data(ctx, uow, user)


@router.post("/me/delete", status_code=204)
async def delete_account(
    body: schemas.DeleteAccount, identity: ApiIdentity, ctx: Ctx, uow: Uow
) -> None:
    """Delete my account: personal data removed, content anonymised, sessions ended."""
    await service.delete_account(ctx, uow, identity, body.password, body.confirm_handle)


@router.get("/me/sessions")
async def list_sessions(identity: ApiIdentity, uow: Uow) -> list[schemas.SessionOut]:
    return await service.list_sessions(uow, identity)


@router.delete("/me/sessions/{session_id}", status_code=204)
async def revoke_session(session_id: UUID, identity: ApiIdentity, uow: Uow) -> None:
    await service.revoke_session(uow, identity, session_id)


@router.get("/me/follow-requests")
async def follow_requests(
    user: ApiUser, ctx: Ctx, uow: Uow, cursor: str | None = None, limit: int = PageLimit
) -> Page[schemas.PersonSummary]:
    items, next_cursor = await service.follow_requests(ctx, uow, user, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


@router.post("/me/follow-requests/{handle}/approve", status_code=204)
async def approve_request(handle: str, user: ApiUser, uow: Uow) -> None:
    await service.answer_request(uow, user, handle, approve=True)


@router.post("/me/follow-requests/{handle}/decline", status_code=204)
async def decline_request(handle: str, user: ApiUser, uow: Uow) -> None:
    await service.answer_request(uow, user, handle, approve=False)


@router.get("/me/blocks")
async def list_blocks(user: ApiUser, ctx: Ctx, uow: Uow) -> list[schemas.PersonSummary]:
    return await service.blocked_people(ctx, uow, user)


@router.get("/people")
async def search_people(
    viewer: ApiOptionalUser,
    ctx: Ctx,
    uow: Uow,
    q: str = Query(min_length=1, max_length=80),
    cursor: str | None = None,
    limit: int = PageLimit,
) -> Page[schemas.PersonSummary]:
    """Find people by handle or name (hidden and blocked people never appear)."""
    items, next_cursor = await service.search_people(ctx, uow, viewer, q, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/people/{handle}")
async def get_profile(
    handle: str, viewer: ApiOptionalUser, ctx: Ctx, uow: Uow
) -> schemas.PublicProfile:
    return await service.profile(ctx, uow, viewer, handle)


@router.get("/people/{handle}/followers")
async def followers(
    handle: str,
    viewer: ApiOptionalUser,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
    limit: int = PageLimit,
) -> Page[schemas.PersonSummary]:
    _, items, next_cursor = await service.connections(
        ctx, uow, viewer, handle, "followers", cursor, limit
    )
    return Page(items=items, next_cursor=next_cursor)


@router.get("/people/{handle}/following")
async def following(
    handle: str,
    viewer: ApiOptionalUser,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
    limit: int = PageLimit,
) -> Page[schemas.PersonSummary]:
    _, items, next_cursor = await service.connections(
        ctx, uow, viewer, handle, "following", cursor, limit
    )
    return Page(items=items, next_cursor=next_cursor)


@router.put("/people/{handle}/follow")
async def follow(handle: str, user: ApiUser, uow: Uow) -> schemas.FollowResult:
    """Follow (or request to follow a private account). Repeating it changes nothing."""
    return await service.follow(uow, user, handle)


@router.delete("/people/{handle}/follow")
async def unfollow(handle: str, user: ApiUser, uow: Uow) -> schemas.FollowResult:
    return await service.unfollow(uow, user, handle)


@router.delete("/people/{handle}/follower", status_code=204)
async def remove_follower(handle: str, user: ApiUser, uow: Uow) -> None:
    await service.remove_follower(uow, user, handle)


@router.put("/people/{handle}/block", status_code=204)
async def block(handle: str, user: ApiUser, uow: Uow) -> None:
    await service.block(uow, user, handle)


@router.delete("/people/{handle}/block", status_code=204)
async def unblock(handle: str, user: ApiUser, uow: Uow) -> None:
    await service.unblock(uow, user, handle)
