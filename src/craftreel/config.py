"""Typed settings read from the environment (prefix ``CRAFTREEL_``); bad values stop start-up."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AnyHttpUrl, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from craftreel.core.money import parse_rates


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


PositiveInt = Annotated[int, Field(gt=0)]


class Settings(BaseSettings):
    """Everything Craftreel reads from its environment; each is documented in docs/settings.md."""

    model_config = SettingsConfigDict(
        env_prefix="CRAFTREEL_", env_file=None, extra="forbid", frozen=True
    )

    environment: Environment = Environment.DEVELOPMENT
    demo_mode: bool = False
    secret_key: SecretStr | None = None
    base_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8000")
    var_dir: Path = Path("var")
    database_url: str = ""
    database_echo: bool = False
    database_pool_size: int = Field(default=32, ge=1, le=500)
    database_max_overflow: int = Field(default=8, ge=0, le=500)
    redis_url: str | None = None
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    log_json: bool = True

    # sessions and tokens
    access_token_minutes: int = Field(default=15, ge=1, le=15)
    refresh_token_days: PositiveInt = 30
    web_session_days: PositiveInt = 30
    email_token_hours: PositiveInt = 24
    reset_token_minutes: PositiveInt = 60
    secure_cookies: bool | None = None

    # passwords
    password_min_length: int = Field(default=8, ge=8)
    password_max_length: int = Field(default=128, ge=64, le=1024)
    argon2_memory_kib: int = Field(default=19456, ge=19456)
    argon2_time_cost: int = Field(default=2, ge=2)
    argon2_parallelism: int = Field(default=1, ge=1)

    # rate limits: "count/seconds"
    rate_limit_signin: str = Field(default="10/300", pattern=r"^\d+/\d+$")
    rate_limit_signin_ip: str = Field(default="50/300", pattern=r"^\d+/\d+$")
    rate_limit_signup: str = Field(default="5/3600", pattern=r"^\d+/\d+$")
    rate_limit_reset: str = Field(default="5/3600", pattern=r"^\d+/\d+$")
    rate_limit_comment: str = Field(default="30/600", pattern=r"^\d+/\d+$")
    rate_limit_share_ip: str = Field(default="60/600", pattern=r"^\d+/\d+$")
    rate_limit_anonymous_views: str = Field(default="20/86400", pattern=r"^\d+/\d+$")

    # mail
    mail_from: str = "Craftreel <hello@craftreel.local>"
    smtp_host: str | None = None
    smtp_port: PositiveInt = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False

    # avatars
    avatar_max_bytes: PositiveInt = 10 * 1024 * 1024
    avatar_max_pixels: PositiveInt = 40_000_000

    # media storage
    storage_backend: Literal["local", "s3"] = "local"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_path_style: bool = False
    s3_public_base_url: str | None = None
    private_url_seconds: int = Field(default=300, ge=10, le=3600)

    # uploads and processing
    upload_max_video_bytes: PositiveInt = 4 * 1024**3
    upload_max_image_bytes: PositiveInt = 30 * 1000**2
    upload_max_audio_bytes: PositiveInt = 500 * 1000**2
    upload_part_mib: int = Field(default=8, ge=8, le=64)
    upload_expiry_hours: PositiveInt = 24
    media_max_duration_seconds: PositiveInt = 600
    media_max_pixels: PositiveInt = 40_000_000
    ffmpeg_path: str | None = None

    # background jobs
    jobs_backend: Literal["inprocess", "redis"] = "inprocess"
    job_concurrency: int = Field(default=1, ge=1, le=32)
    job_max_attempts: int = Field(default=5, ge=1, le=50)
    job_lease_seconds: int = Field(default=120, ge=10)
    # how often Discover's stored rank scores are recomputed from engagement
    rank_refresh_seconds: int = Field(default=300, ge=10, le=24 * 3600)
    feed_card_seconds: float = Field(default=20, ge=0, le=3600)
    feed_card_limit: int = Field(default=20_000, ge=0, le=1_000_000)
    feed_page_seconds: float = Field(default=30, ge=0, le=3600)
    feed_page_mib: int = Field(default=32, ge=0, le=4096)
    auth_cache_seconds: float = Field(default=10, ge=0, le=300)

    # real time: the event bus, the /ws socket and the event log
    bus_backend: Literal["inprocess", "redis"] = "inprocess"
    realtime_heartbeat_seconds: int = Field(default=25, ge=5, le=300)
    realtime_reauth_seconds: int = Field(default=300, ge=10, le=3600)
    realtime_retention_days: int = Field(default=7, ge=1, le=365)

    # shop
    checkout_reservation_minutes: int = Field(default=15, ge=1, le=24 * 60)
    tax_rates: str = "GB:2000,IE:2300,FR:2000,DE:1900,NL:2100,*:0"

    # payments
    payment_provider: Literal["test", "stripe"] = "test"
    platform_fee_bps: int = Field(default=500, ge=0, le=10_000)
    test_payments_webhook_secret: SecretStr | None = None
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_connect_webhook_secret: SecretStr | None = None
    stripe_api_base: str = "https://api.stripe.com"
    payment_reconcile_seconds: int = Field(default=300, ge=5, le=24 * 3600)
    # where alerts that need a person go (a transfer to a seller the provider refused)
    operator_email: str = ""
    transfer_max_attempts: int = Field(default=10, ge=1, le=50)

    # social sign-in (OpenID Connect ID tokens)
    google_client_id: str | None = None
    google_issuer: str = "https://accounts.google.com"
    google_jwks_url: str = "https://www.googleapis.com/oauth2/v3/certs"
    google_authorize_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    apple_client_id: str | None = None
    apple_issuer: str = "https://appleid.apple.com"
    apple_jwks_url: str = "https://appleid.apple.com/auth/keys"
    apple_authorize_url: str = "https://appleid.apple.com/auth/authorize"

    @model_validator(mode="after")
    def _check(self) -> Self:
        weak_key = self.secret_key is None or len(self.secret_key.get_secret_value()) < 32
        if weak_key and not self.demo_mode and self.environment != Environment.TEST:
            raise ValueError(
                "CRAFTREEL_SECRET_KEY must be set to at least 32 characters "
                "(or set CRAFTREEL_DEMO_MODE=true for a local demo)"
            )
        if not (
            self.database_url == ""
            or self.database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://"))
        ):
            raise ValueError(
                "CRAFTREEL_DATABASE_URL must start with sqlite+aiosqlite:// "
                "or postgresql+asyncpg://"
            )
        try:
            parse_rates(self.tax_rates)
        except ValueError as exc:
            raise ValueError(f"CRAFTREEL_TAX_RATES is not valid: {exc}") from exc
        if self.payment_provider == "stripe" and not (
            self.stripe_secret_key and self.stripe_webhook_secret
        ):
            raise ValueError(
                "CRAFTREEL_STRIPE_SECRET_KEY and CRAFTREEL_STRIPE_WEBHOOK_SECRET must be set "
                "when CRAFTREEL_PAYMENT_PROVIDER=stripe"
            )
        if (
            self.payment_provider == "test"
            and self.environment == Environment.PRODUCTION
            and not self.demo_mode
        ):
            raise ValueError(
                "the test payment provider takes test cards as money: set "
                "CRAFTREEL_PAYMENT_PROVIDER=stripe in production"
            )
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("CRAFTREEL_S3_BUCKET must be set when CRAFTREEL_STORAGE_BACKEND=s3")
        if self.jobs_backend == "redis" and not self.redis_url:
            raise ValueError("CRAFTREEL_REDIS_URL must be set when CRAFTREEL_JOBS_BACKEND=redis")
        if self.bus_backend == "redis" and not self.redis_url:
            raise ValueError("CRAFTREEL_REDIS_URL must be set when CRAFTREEL_BUS_BACKEND=redis")
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.var_dir / 'craftreel.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def signing_key(self) -> bytes:
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        # Demo and test only (the validator refuses this otherwise): a fixed, public key.
        return b"craftreel-demo-key-not-secret-do-not-use-in-production"

    @property
    def cookies_secure(self) -> bool:
        if self.secure_cookies is not None:
            return self.secure_cookies
        return self.environment == Environment.PRODUCTION

    @property
    def media_dir(self) -> Path:
        return self.var_dir / "media"

    @property
    def uploads_dir(self) -> Path:
        return self.var_dir / "uploads"

    @property
    def work_dir(self) -> Path:
        return self.var_dir / "work"

    @property
    def mail_dir(self) -> Path:
        return self.var_dir / "mail"
