"""Fixtures: the suite runs on SQLite always and on PostgreSQL when
CRAFTREEL_TEST_DATABASE_URL is set; Redis paths run when CRAFTREEL_TEST_REDIS_URL is set."""

from __future__ import annotations

import asyncio
import email
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A write inside a read-only (GET) unit of work fails the test on SQLite too, as it always
# does on PostgreSQL. Set before craftreel.core.db reads it at import.
os.environ.setdefault("CRAFTREEL_STRICT_READ_ONLY", "1")

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from craftreel.app import create_app
from craftreel.cli import migrate
from craftreel.config import Settings
from craftreel.context import AppContext, build_context
from craftreel.core.db import Base

PG_URL = os.environ.get("CRAFTREEL_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("CRAFTREEL_TEST_REDIS_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
PASSWORD = "correct horse battery staple"


def _worker_db_name() -> str:
    return f"craftreel_test_{os.getpid()}"


async def _recreate_pg_database(base_url: str, name: str) -> str:
    import asyncpg

    url = make_url(base_url)
    conn = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, database=url.database or "postgres"
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One migrated database per backend for the whole run."""
    urls = {"sqlite": f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"}
    if PG_URL:
        urls["postgresql"] = asyncio.run(_recreate_pg_database(PG_URL, _worker_db_name()))
    for url in urls.values():
        migrate(Settings(environment="test", database_url=url))  # type: ignore[arg-type]
    return urls


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, database_urls: dict[str, str], tmp_path: Path) -> Settings:
    return Settings(
        environment="test",  # type: ignore[arg-type]
        database_url=database_urls[backend],
        var_dir=tmp_path / "var",
        log_json=False,
        log_level="WARNING",
    )


async def _empty_tables(ctx: AppContext) -> None:
    tables = list(reversed(Base.metadata.sorted_tables))
    async with ctx.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            await conn.execute(text(f"TRUNCATE {names} CASCADE"))
        else:
            for table in tables:
                await conn.execute(table.delete())


@asynccontextmanager
async def fresh_context(settings: Settings) -> AsyncIterator[AppContext]:
    """An app context on emptied tables, closed afterwards."""
    context = build_context(settings)
    await _empty_tables(context)
    try:
        yield context
    finally:
        await context.close()


@asynccontextmanager
async def running_app(settings: Settings, context: AppContext) -> AsyncIterator[Any]:
    """The app with its lifespan (job runner, mail sweeper) running."""
    application = create_app(settings, context)
    async with application.router.lifespan_context(application):
        yield application


@asynccontextmanager
async def client_for(app: Any, address: str = "203.0.113.7") -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[AppContext]:
    async with fresh_context(settings) as context:
        yield context


@pytest.fixture
async def app(settings: Settings, ctx: AppContext) -> AsyncIterator[Any]:
    async with running_app(settings, ctx) as application:
        yield application


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c


@dataclass
class Outbox:
    """The mail the app wrote to var/mail, newest last."""

    folder: Path

    def messages(self) -> list[email.message.Message]:
        if not self.folder.exists():
            return []
        return [email.message_from_bytes(p.read_bytes()) for p in sorted(self.folder.glob("*.eml"))]

    def last_to(self, address: str) -> email.message.Message:
        found = [m for m in self.messages() if str(m["To"]).lower() == address.lower()]
        assert found, f"no mail to {address}"
        return found[-1]

    def link(self, address: str, path: str) -> str:
        body = self.last_to(address).get_payload(decode=True)
        assert isinstance(body, bytes)
        match = re.search(rf"https?://[^\s]+{re.escape(path)}\?token=([^\s]+)", body.decode())
        assert match, f"no {path} link in the mail to {address}"
        return match.group(1)


@pytest.fixture
def outbox(settings: Settings) -> Outbox:
    return Outbox(settings.mail_dir)


@pytest.fixture
def redis_url() -> Iterator[str]:
    if not REDIS_URL:
        pytest.skip("CRAFTREEL_TEST_REDIS_URL is not set")
    yield REDIS_URL
