"""The long-lived collaborators built once in the app's lifespan and handed to services."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from craftreel.accounts.identities import IdentityCache
from craftreel.accounts.social import JwksCache
from craftreel.config import Settings
from craftreel.core.bus import EventBus, InProcessBus, RedisBus
from craftreel.core.db import UnitOfWork, create_engine, session_factory
from craftreel.core.jobs import JobQueue
from craftreel.core.mail import FileMailer, Mailer, SmtpMailer
from craftreel.core.outbox import MailOutbox
from craftreel.core.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from craftreel.core.security import Passwords
from craftreel.core.stamps import Stamps, attach_stamps
from craftreel.core.storage import LocalStorage, S3Storage, Storage
from craftreel.feed.pages import PageCache
from craftreel.posts.cards import CardCache
from craftreel.realtime.service import attach_bus


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    passwords: Passwords
    outbox: MailOutbox
    jobs: JobQueue
    limiter: RateLimiter
    storage: Storage
    http: httpx.AsyncClient
    jwks: JwksCache
    redis: Redis | None
    #: Live events between processes (craftreel.core.bus); published after commit.
    bus: EventBus
    #: Rendered feed cards (see posts/cards.py); off unless the settings turn it on.
    cards: CardCache = field(default_factory=lambda: CardCache(0, 0))
    #: Sessions bearer tokens named, reused by read-only requests (accounts/identities.py).
    identities: IdentityCache = field(default_factory=lambda: IdentityCache(0))
    #: Feed pages sent, sent again to the same reader (feed/pages.py); off unless turned on.
    pages: PageCache = field(default_factory=lambda: PageCache(Stamps(None), 0, 0))

    def uow(self, *, read_only: bool = False) -> UnitOfWork:
        return UnitOfWork(self.sessions, read_only=read_only)

    async def close(self) -> None:
        # Card refreshes read the database: they end before the engine does.
        if self.cards.refresher is not None:
            await asyncio.gather(self.cards.refresher, return_exceptions=True)
        await self.bus.close()
        await self.http.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


def build_storage(settings: Settings) -> Storage:
    """The media store the settings name."""
    if settings.storage_backend == "s3":
        assert settings.s3_bucket is not None  # the settings validator guarantees it
        return S3Storage(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key.get_secret_value()
            if settings.s3_secret_key
            else None,
            path_style=settings.s3_path_style,
            public_base_url=settings.s3_public_base_url,
        )
    return LocalStorage(settings.media_dir, settings.signing_key)


def build_bus(settings: Settings, redis: Redis | None) -> EventBus:
    """The event bus the settings name."""
    if settings.bus_backend == "redis":
        assert redis is not None  # the settings validator guarantees it
        return RedisBus(redis)
    return InProcessBus()


def build_context(settings: Settings) -> AppContext:
    """Make the engine and clients the settings ask for (nothing connects yet)."""
    engine = create_engine(
        settings.effective_database_url,
        echo=settings.database_echo,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    mailer: Mailer
    if settings.smtp_host:
        mailer = SmtpMailer(
            settings.smtp_host,
            settings.smtp_port,
            settings.mail_from,
            settings.smtp_username,
            settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            settings.smtp_starttls,
        )
    else:
        mailer = FileMailer(settings.mail_dir, settings.mail_from)
    http = httpx.AsyncClient(timeout=10)
    sessions = session_factory(engine)
    bus = build_bus(settings, redis)
    # Any service holding a unit of work can emit live events (craftreel.realtime).
    attach_bus(sessions, bus)
    # Any unit of work can tell this host's caches whose views it changed (core/stamps.py).
    stamps = Stamps(settings.var_dir / "run" / "stamps")
    attach_stamps(sessions, stamps)
    return AppContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        passwords=Passwords(
            settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism
        ),
        outbox=MailOutbox(sessions, mailer),
        jobs=JobQueue(
            sessions,
            lease_seconds=settings.job_lease_seconds,
            max_attempts=settings.job_max_attempts,
        ),
        limiter=RedisRateLimiter(redis) if redis is not None else MemoryRateLimiter(),
        storage=build_storage(settings),
        http=http,
        jwks=JwksCache(http),
        redis=redis,
        bus=bus,
        cards=CardCache(
            min(settings.feed_card_seconds, settings.private_url_seconds / 4),
            settings.feed_card_limit,
        ),
        identities=IdentityCache(settings.auth_cache_seconds),
        pages=PageCache(
            stamps,
            min(settings.feed_page_seconds, settings.private_url_seconds / 4),
            settings.feed_page_mib * 1024 * 1024,
        ),
    )
