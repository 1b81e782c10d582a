"""Health, readiness, metrics, request ids, settings and the schema."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import Connection

import craftreel.models  # noqa: F401
from craftreel.config import Settings
from craftreel.context import AppContext
from craftreel.core.db import Base
from craftreel.core.ids import uuid7
from craftreel.core.logging import JsonFormatter, request_id_var
from craftreel.feed.search import is_search_index_object


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"


async def test_readyz_fails_when_the_database_is_gone(settings: Settings) -> None:
    from craftreel.app import create_app

    broken = settings.model_copy(
        update={"database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/none"}
    )
    app = create_app(broken)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            response = await c.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("error")


async def test_metrics_count_requests_by_route(client: httpx.AsyncClient) -> None:
    await client.get("/api/v1/people/someone")
    text = (await client.get("/metrics")).text
    sample = 'method="GET",route="/api/v1/people/{handle}",status="404"'
    assert f"craftreel_http_requests_total{{{sample}}} 1.0" in text


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert made.headers["x-request-id"] != "bad id with spaces"
    assert len(made.headers["x-request-id"]) == 32
    assert made.headers["x-content-type-options"] == "nosniff"


def test_json_log_lines_carry_the_request_id() -> None:
    token = request_id_var.set("req-42")
    try:
        record = logging.LogRecord(
            "craftreel", logging.INFO, __file__, 1, "hello %s", ("you",), None
        )
        record.user_id = "u1"
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "hello you"
    assert line["request_id"] == "req-42"
    assert line["user_id"] == "u1"
    assert line["level"] == "info"


async def test_openapi_and_docs(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/auth/signin" in spec["paths"]
    assert all(path.startswith("/api/v1/") for path in spec["paths"])
    assert (await client.get("/docs")).status_code == 200


def test_settings_refuse_to_start_without_a_secret_outside_demo() -> None:
    with pytest.raises(ValidationError, match="CRAFTREEL_SECRET_KEY"):
        Settings(environment="production")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="CRAFTREEL_SECRET_KEY"):
        Settings(environment="production", secret_key="short")  # type: ignore[arg-type]
    ok = Settings(
        environment="production",  # type: ignore[arg-type]
        secret_key="k" * 40,  # type: ignore[arg-type]
        payment_provider="stripe",
        stripe_secret_key="sk_test_x",  # type: ignore[arg-type]
        stripe_webhook_secret="whsec_x",  # type: ignore[arg-type]
    )
    assert ok.cookies_secure is True
    assert Settings(demo_mode=True).cookies_secure is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("database_url", "mysql://nope"),
        ("access_token_minutes", 60),
        ("argon2_memory_kib", 1024),
        ("rate_limit_signin", "lots"),
        ("log_level", "LOUD"),
    ],
)
def test_settings_refuse_bad_values(name: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Settings(demo_mode=True, **{name: value})  # type: ignore[arg-type]


def test_command_line_reports_a_bad_setting_and_exits() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "craftreel.cli_main", "migrate"],
        env={"CRAFTREEL_ENVIRONMENT": "production", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "CRAFTREEL_SECRET_KEY" in result.stderr


def test_every_setting_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text()
    missing = [name for name in Settings.model_fields if f"CRAFTREEL_{name.upper()}" not in doc]
    assert missing == []


async def test_migrations_match_the_models(ctx: AppContext) -> None:
    def diff(connection: Connection) -> list[object]:
        # The full-text search index (migration 0008) lives outside the models on purpose.
        migration = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_name": lambda name, type_, _parent: (
                    not is_search_index_object(name, type_)
                ),
            },
        )
        return list(compare_metadata(migration, Base.metadata))

    async with ctx.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


def test_uuid7_is_version_7_and_time_ordered() -> None:
    ids = [uuid7() for _ in range(2000)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_no_two_routes_share_a_method_and_path() -> None:
    """Routers are included busiest first (app.py); that is safe only while no route can
    shadow another."""
    from fastapi.routing import APIRoute
    from starlette.routing import Route

    from craftreel.app import create_app

    app = create_app(Settings(environment="test", demo_mode=True))  # type: ignore[arg-type]
    seen: set[tuple[str, str]] = set()
    duplicates = []
    routes = [r for r in app.routes if isinstance(r, APIRoute | Route)]
    for route in app.router.routes:
        routes.extend(getattr(getattr(route, "original_router", None), "routes", []))
    for route in routes:
        for method in getattr(route, "methods", None) or {"WS"}:
            key = (method, getattr(route, "path", ""))
            if key in seen:
                duplicates.append(key)
            seen.add(key)
    assert len(seen) > 100
    assert duplicates == []


async def test_a_write_in_a_read_only_unit_of_work_is_refused(ctx: AppContext) -> None:
    """On PostgreSQL a read-only unit of work reads in autocommit mode, where a write would
    commit on its own: it is refused (on SQLite too, as the suite runs strict)."""
    from sqlalchemy import text

    from craftreel.core.db import WriteInReadOnlyUnitOfWork

    with pytest.raises(WriteInReadOnlyUnitOfWork):
        async with ctx.uow(read_only=True) as uow:
            assert (await uow.session.execute(text("SELECT 1"))).scalar() == 1
            await uow.session.execute(text("DELETE FROM follows"))
    async with ctx.uow() as uow:  # a writing one is not affected
        await uow.session.execute(text("DELETE FROM follows"))


async def test_a_connection_dropped_while_idle_is_replaced_unnoticed(
    ctx: AppContext, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ping per request; a pooled connection that sat idle is pinged before use, so one
    the database closed meanwhile (a restart) costs no request an error."""
    if backend != "postgresql":
        pytest.skip("SQLite connections are files, not sockets")
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from craftreel.core import db

    async with ctx.uow(read_only=True) as uow:
        before = (await uow.session.execute(text("SELECT pg_backend_pid()"))).scalar()
    other = create_async_engine(ctx.settings.effective_database_url, poolclass=NullPool)
    async with other.connect() as conn:  # not from the pool: that would hand out the same one
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
    await other.dispose()
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)
    for _ in range(3):  # every pooled connection, the dead one among them
        async with ctx.uow(read_only=True) as uow:
            after = (await uow.session.execute(text("SELECT pg_backend_pid()"))).scalar()
        assert after != before
