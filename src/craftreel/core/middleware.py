"""Pure ASGI middleware: request ids, access logs, Prometheus metrics, security headers,
cookies set by handlers."""

from __future__ import annotations

import gc
import logging
import re
import time
import uuid

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from craftreel.core.logging import request_id_var

log = logging.getLogger("craftreel.access")
gc_log = logging.getLogger("craftreel.gc")
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class Metrics:
    """The app's own Prometheus registry (no import-time globals)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "craftreel_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "craftreel_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )


class RequestContextMiddleware:
    """Give every request an id (kept from X-Request-ID when sane), log it, count it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID_OK.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_code = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = request_id
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("referrer-policy", "strict-origin-when-cross-origin")
                headers.setdefault("x-frame-options", "DENY")
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status_code)).inc()
            self.metrics.latency.labels(method, template).observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": method,
                    "path": scope["path"],
                    "status": status_code,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)


class FreezeWhenWarm:
    """Move what a warmed-up process keeps out of the garbage collector's sight (``gc.freeze``),
    once after each of its ``at``-th requests (``craftreel serve``).

    The app freezes what is alive once it has started (see ``create_app``), but most of what
    a serving process keeps for good is made by its first requests: the pool's connections
    and their prepared statements, compiled SQL, route and validator caches — ~50,000 objects
    that every full collection then walks, 20–50 ms with every request in the process
    waiting, every second or two under load. A freeze costs one full collection (tens of
    ms), and an object frozen is never collected as part of a reference cycle: so it
    happens twice in a process's life, not periodically, and what it keeps is bounded.
    """

    def __init__(self, app: ASGIApp, at: tuple[int, ...] = (1_000, 20_000)) -> None:
        self.app = app
        self.at = sorted(at)
        self.served = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.at and scope["type"] == "http":
            self.served += 1
            if self.served >= self.at[0]:
                self.at.pop(0)
                gc.collect()
                gc.freeze()
                gc_log.info(
                    "gc frozen", extra={"served": self.served, "frozen": gc.get_freeze_count()}
                )
        await self.app(scope, receive, send)


class CookieMiddleware:
    """Cookies decided while handling a request, set on its response: a new CSRF cookie for a
    browser that has none (``scope["state"]["new_csrf"]``), and the removal of a session
    cookie whose session has ended (``scope["state"]["clear_session_cookie"]``)."""

    def __init__(
        self, app: ASGIApp, *, session_cookie: str, csrf_cookie: str, secure: bool
    ) -> None:
        self.app = app
        self.session_cookie = session_cookie
        self.csrf_cookie = csrf_cookie
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state = scope.get("state") or {}
                if state.get("clear_session_cookie") or state.get("new_csrf"):
                    self._set_cookies(scope, state, MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, send_wrapper)

    def _set_cookies(self, scope: Scope, state: dict[str, object], headers: MutableHeaders) -> None:
        cookies = Response()  # only to format Set-Cookie headers the way Starlette does
        if state.get("clear_session_cookie"):
            # The browser holds a cookie for a session that has ended: forget it.
            cookies.delete_cookie(self.session_cookie)
        new = state.get("new_csrf")
        if isinstance(new, str) and self.csrf_cookie not in Request(scope).cookies:
            cookies.set_cookie(
                self.csrf_cookie,
                new,
                httponly=True,
                samesite="lax",
                secure=self.secure,
                max_age=60 * 60 * 24 * 365,
            )
        for name, value in cookies.raw_headers:
            if name == b"set-cookie":
                headers.append("set-cookie", value.decode("latin-1"))
