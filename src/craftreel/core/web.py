"""Server-rendered pages: the Jinja environment, rendering and CSRF protection."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from craftreel.core.errors import CsrfFailed

PACKAGE_DIR = Path(__file__).resolve().parent.parent
CSRF_COOKIE = "cr_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def build_templates() -> Environment:
    """One loader over every feature's ``templates/`` folder and the shared web one."""
    folders = sorted(p for p in PACKAGE_DIR.glob("*/templates") if p.is_dir())
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(str(f)) for f in folders]),
        autoescape=select_autoescape(["html", "xml"]),
        enable_async=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def csrf_token_for(request: Request) -> str:
    """The CSRF token for this browser: a random value kept in a cookie (double submit)."""
    token = request.cookies.get(CSRF_COOKIE) or request.state.__dict__.get("new_csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.state.new_csrf = token
    return str(token)


async def verify_csrf(request: Request) -> None:
    """Refuse an unsafe request whose form field or header does not match the CSRF cookie."""
    if request.method in SAFE_METHODS:
        return
    cookie = request.cookies.get(CSRF_COOKIE)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not cookie or not sent or not hmac.compare_digest(cookie, sent):
        raise CsrfFailed()


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render a page with the context every template may use."""
    env: Environment = request.app.state.templates
    full: dict[str, Any] = {
        "request": request,
        "current_user": getattr(request.state, "user", None),
        "csrf_token": csrf_token_for(request),
        "toasts": list(getattr(request.state, "toasts", [])),
        "active_tab": None,
        "settings": request.app.state.settings,
    }
    full.update(context or {})
    html = env.get_template(template).render(full)
    return HTMLResponse(html, status_code=status_code, headers=headers)
