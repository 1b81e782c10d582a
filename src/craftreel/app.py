"""The ASGI application: ``create_app(settings)`` wires routers, middleware and the lifespan."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from craftreel.accounts import api as accounts_api
from craftreel.accounts import views as accounts_views
from craftreel.accounts.deps import SESSION_COOKIE
from craftreel.config import Settings
from craftreel.context import AppContext, build_context
from craftreel.core.errors import DomainError, NotAuthenticated
from craftreel.core.logging import configure_logging
from craftreel.core.middleware import (
    CookieMiddleware,
    FreezeWhenWarm,
    Metrics,
    RequestContextMiddleware,
)
from craftreel.core.web import CSRF_COOKIE, PACKAGE_DIR, build_templates, render
from craftreel.feed import api as feed_api
from craftreel.feed import search_api
from craftreel.feed import views as feed_views
from craftreel.media import api as media_api
from craftreel.media import serving as media_serving
from craftreel.media import views as media_views
from craftreel.posts import api as posts_api
from craftreel.posts import interactions_api, saved_views
from craftreel.posts import views as posts_views
from craftreel.realtime import ws as realtime_ws
from craftreel.runtime import start_background
from craftreel.shop import api as shop_api
from craftreel.shop import live_views as shop_live_views
from craftreel.shop import orders_api, payments_api
from craftreel.shop import tags_api as shop_tags_api
from craftreel.shop import views as shop_views
from craftreel.web import views as web_views

log = logging.getLogger(__name__)


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path in ("/healthz", "/readyz")


def _error_response(
    request: Request, status_code: int, code: str, message: str, details: dict[str, object]
) -> Response:
    if wants_json(request):
        body = {"error": {"code": code, "message": message, "details": details}}
        return JSONResponse(body, status_code=status_code)
    if request.headers.get("hx-request") == "true":
        # htmx swaps nothing on an error status by default; the toast script shows this.
        return JSONResponse(
            {"error": {"code": code, "message": message, "details": details}},
            status_code=status_code,
            headers={"HX-Trigger": '{"craftreel:error": ' + _json_str(message) + "}"},
        )
    return render(
        request,
        "web/error.html",
        {"status_code": status_code, "code": code, "message": message},
        status_code=status_code,
    )


def _json_str(value: str) -> str:
    import json

    return json.dumps(value)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        if (
            isinstance(exc, NotAuthenticated)
            and not wants_json(request)
            and request.method == "GET"
        ):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/signin?next={quote(target)}", status_code=303)
        response = _error_response(
            request, exc.status_code, exc.code, exc.detail_message, exc.details
        )
        retry_after = exc.details.get("retry_after")
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        fields = [
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "message": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
            for err in exc.errors()
        ]
        return _error_response(
            request,
            422,
            "validation_error",
            "Some fields are missing or not valid.",
            {"fields": fields},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        return _error_response(
            request, exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail), {}
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return _error_response(
            request, 500, "internal_error", "Something went wrong on our side. Try again.", {}
        )


def create_app(
    settings: Settings, ctx: AppContext | None = None, *, freeze_gc: bool = False
) -> FastAPI:
    """Build the app; the lifespan makes (or adopts) the engine and clients.

    ``freeze_gc`` (``craftreel serve``): once started, everything alive is moved out of the
    garbage collector's sight (``gc.freeze``). Otherwise each full collection walks the
    ~180,000 objects of the loaded app — about 50 ms with every request waiting."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = ctx is None
        context = ctx or build_context(settings)
        app.state.ctx = context
        settings.media_dir.mkdir(parents=True, exist_ok=True)
        await context.bus.start()
        # With Redis, `craftreel worker` processes run the jobs; otherwise this process does.
        background = await start_background(context, run_jobs=settings.jobs_backend == "inprocess")
        app.state.background = background
        if freeze_gc:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await context.bus.close()  # live sockets end with 1012: reconnect elsewhere
            await background.stop()
            if owned:
                await context.close()

    configure_logging(settings.log_level, settings.log_json)
    app = FastAPI(
        title="Craftreel",
        version="0.1.0",
        description="Craft video marketplace API. Errors are `{error: {code, message, details}}`.",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
        # FastAPI's built-in OpenTelemetry looks up the global providers on every request to
        # see whether anyone configured them; no one does here (we log and count with
        # core.logging and Prometheus).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.templates = build_templates()
    # Per-page extras for a signed-in person's app bar (see accounts.deps.web_optional_identity).
    app.state.page_extras = (shop_views.appbar_extras,)
    metrics = Metrics()
    app.state.metrics = metrics
    install_error_handlers(app)

    app.add_middleware(
        CookieMiddleware,
        session_cookie=SESSION_COOKIE,
        csrf_cookie=CSRF_COOKIE,
        secure=settings.cookies_secure,
    )
    # Inside the request log and metrics, before everything else (feed/api.py).
    app.add_middleware(feed_api.KeptPages)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    if freeze_gc:
        app.add_middleware(FreezeWhenWarm)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        """The database (and Redis, when configured) answer."""
        context: AppContext = request.app.state.ctx
        checks: dict[str, str] = {}
        try:
            async with context.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        if context.redis is not None:
            try:
                await context.redis.ping()
                checks["redis"] = "ok"
            except Exception as exc:
                checks["redis"] = f"error: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # FastAPI tries routers in this order, route by route, on every request (a quarter of a
    # millisecond to reach the sixteenth router): the busiest come first. No two routes share
    # a method and path (tests/test_app.py checks), so the order changes nothing else.
    for router in (
        feed_api.router,
        media_serving.router,
        interactions_api.router,
        posts_api.router,
        feed_views.router,
        posts_views.router,
        shop_tags_api.router,
        accounts_api.router,
        accounts_views.router,
        web_views.router,
        media_api.router,
        media_views.router,
        saved_views.router,
        search_api.router,
        shop_api.router,
        orders_api.router,
        payments_api.router,
        shop_views.router,
        shop_live_views.router,
        realtime_ws.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=PACKAGE_DIR / "web" / "static"), name="static")
    return app
