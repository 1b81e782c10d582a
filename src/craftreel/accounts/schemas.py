"""Accounts API shapes (exported in OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, HttpUrl

HANDLE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.]{2,29}$"

Handle = Annotated[str, Field(pattern=HANDLE_PATTERN, examples=["wool_and_wood"])]
Password = Annotated[str, Field(min_length=1, max_length=1024)]


def _strip(value: str) -> str:
    return value.strip()


DisplayName = Annotated[str, AfterValidator(_strip), Field(min_length=1, max_length=80)]


class SignUp(BaseModel):
    email: EmailStr
    handle: Handle
    password: Password
    display_name: DisplayName | None = None


class SignIn(BaseModel):
    email: EmailStr
    password: Password
    device: str | None = Field(default=None, max_length=200)


class SocialSignIn(BaseModel):
    id_token: str = Field(min_length=10, max_length=8192)
    nonce: str = Field(min_length=8, max_length=200)
    device: str | None = Field(default=None, max_length=200)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=10, max_length=200)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int
    session_id: UUID


class EmailTokenBody(BaseModel):
    token: str = Field(min_length=10, max_length=1000)


class ForgotPassword(BaseModel):
    email: EmailStr


class ResetPassword(BaseModel):
    token: str = Field(min_length=10, max_length=1000)
    password: Password


class ChangePassword(BaseModel):
    current_password: Password
    new_password: Password


class ChangeEmail(BaseModel):
    new_email: EmailStr
    password: Password


class DeleteAccount(BaseModel):
    password: Password | None = None
    confirm_handle: str = Field(min_length=1, max_length=30)


class ProfileUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: DisplayName | None = None
    handle: Handle | None = None
    bio: str | None = Field(default=None, max_length=500)
    links: list[HttpUrl] | None = Field(default=None, max_length=5)
    is_maker: bool | None = None


class PrivacyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    is_private: bool | None = None
    message_policy: Literal["everyone", "following", "nobody"] | None = None
    hide_from_search: bool | None = None


class PublicProfile(BaseModel):
    id: UUID
    handle: str
    display_name: str
    bio: str
    links: list[str]
    avatar_url: str | None
    is_maker: bool
    is_private: bool
    followers: int
    following: int
    relationship: Relationship | None = None


class Relationship(BaseModel):
    """How the viewer stands with a profile."""

    following: Literal["none", "pending", "active"]
    follows_you: bool
    blocked: bool


class Me(BaseModel):
    id: UUID
    email: str
    email_verified: bool
    handle: str
    display_name: str
    bio: str
    links: list[str]
    avatar_url: str | None
    is_maker: bool
    is_private: bool
    message_policy: str
    hide_from_search: bool
    created_at: datetime


class SessionOut(BaseModel):
    id: UUID
    kind: str
    device: str
    ip: str
    created_at: datetime
    last_seen_at: datetime
    current: bool


class PersonSummary(BaseModel):
    id: UUID
    handle: str
    display_name: str
    avatar_url: str | None
    is_maker: bool


class FollowResult(BaseModel):
    status: Literal["none", "pending", "active"]


PublicProfile.model_rebuild()
