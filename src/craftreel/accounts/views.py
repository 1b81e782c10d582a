"""Accounts pages: sign-up and sign-in, email links, social sign-in, profiles and settings.

Each handler parses its form, calls the same service function as the JSON API, then renders
or redirects (303, with a toast carried in a short-lived cookie). A form the service turns
down is rendered again with its errors while the request's transaction rolls back: see
``FormRejected`` and ``PageRoute``.
"""

from __future__ import annotations

import functools
import hmac
import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote, urlencode, urlsplit
from uuid import UUID

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.types import Receive, Scope, Send

from craftreel.accounts import schemas, service
from craftreel.accounts.api import read_upload
from craftreel.accounts.deps import (
    SESSION_COOKIE,
    ClientInfo,
    WebIdentity,
    WebOptionalIdentity,
)
from craftreel.accounts.models import SessionKind
from craftreel.accounts.social import SocialTokenInvalid, configured_providers, provider_named
from craftreel.config import Settings
from craftreel.core.clock import utcnow
from craftreel.core.errors import (
    DomainError,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    TokenInvalid,
)
from craftreel.core.security import new_token, sign, unsign
from craftreel.core.web import render, verify_csrf
from craftreel.deps import Ctx, Uow, writes_on_get

PAGE_SIZE = 20
FLASH_COOKIE = "cr_flash"
FLASH_PURPOSE = "flash"
FLASH_SECONDS = 60
SOCIAL_COOKIE = "cr_social"
SOCIAL_PURPOSE = "social-signin"
SOCIAL_SECONDS = 600
SOCIAL_TITLES = {"google": "Google", "apple": "Apple"}
MAX_LINKS = 5

Text = Annotated[str, Form()]
NextPath = Annotated[str, Form(alias="next")]
NextQuery = Annotated[str, Query(alias="next")]
Toast = tuple[str, Literal["success", "info", "error"]]
M = TypeVar("M", bound=BaseModel)


# --- a rejected form renders its page again; the transaction still rolls back -----------


class FormRejected(Exception):
    """A page turned a request down: ``response`` is what to show instead."""

    def __init__(self, response: Response, cause: DomainError | None = None) -> None:
        super().__init__("form rejected")
        self.response = response
        # Read by the unit of work: an error that keeps its changes still keeps them.
        self.commit_anyway = bool(cause and cause.commit_anyway)


Endpoint = Callable[..., Awaitable[Response]]


def _render_errors_in_place(endpoint: Endpoint) -> Endpoint:
    """Turn a domain error into its error page while the request's data is still loaded.

    The app's own handler renders after the unit of work rolled back, when the signed-in
    person's row can no longer be read; rendering here first avoids that. htmx requests
    (answered with JSON) and sign-in redirects still go to the app's handler.
    """

    @functools.wraps(endpoint)
    async def page_endpoint(*args: Any, **kwargs: Any) -> Response:
        try:
            return await endpoint(*args, **kwargs)
        except DomainError as exc:
            request = kwargs.get("request")
            if (
                not isinstance(request, Request)
                or _is_htmx(request)
                or (isinstance(exc, NotAuthenticated) and request.method == "GET")
            ):
                raise
            response = page(
                request,
                "web/error.html",
                {"status_code": exc.status_code, "code": exc.code, "message": exc.detail_message},
                status_code=exc.status_code,
            )
            raise _with_retry_after(FormRejected(response, exc), exc) from exc

    return page_endpoint


class PageRoute(APIRoute):
    """A page route: a ``FormRejected`` from its handler becomes the response.

    The exception leaves the handler first, so the unit of work rolls back and nothing the
    service half-wrote is committed; only then is the re-rendered page sent.
    """

    def __init__(self, path: str, endpoint: Endpoint, **kwargs: Any) -> None:
        super().__init__(path, _render_errors_in_place(endpoint), **kwargs)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().handle(scope, receive, send)
        except FormRejected as rejected:
            await rejected.response(scope, receive, send)


router = APIRouter(
    include_in_schema=False, dependencies=[Depends(verify_csrf)], route_class=PageRoute
)
# The provider posts the sign-in result cross-site, so it cannot carry our CSRF token; the
# state value in a signed cookie protects that one route instead.
provider_callback_router = APIRouter(include_in_schema=False, route_class=PageRoute)


class FormInvalid(InvalidInput):
    """Form fields failed validation before any rule ran (``details["fields"]``)."""

    message = "Some fields need another look."


# What to say when a field fails the schema; pydantic's own words are for developers.
FIELD_PROBLEMS = {
    "email": "Enter an email address, like name@example.com.",
    "new_email": "Enter an email address, like name@example.com.",
    "handle": "Use 3 to 30 letters, numbers, dots or underscores, starting with a letter "
    "or number.",
    "display_name": "Enter a name of up to 80 characters.",
    "bio": "Keep your bio to 500 characters.",
    "links": f"Add up to {MAX_LINKS} links, each a full web address like https://example.com.",
    "password": "Enter a password.",
    "current_password": "Enter your current password.",
    "new_password": "Enter a new password.",
    "confirm_handle": "Type your handle to confirm.",
    "message_policy": "Choose who may message you.",
    "token": "This link is incomplete. Open it again from your email.",
}


def parse_form(model: type[M], **values: Any) -> M:
    """The form as a schema, or ``FormInvalid`` naming each field that failed."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            problems.setdefault(field, FIELD_PROBLEMS.get(field, str(error["msg"])))
        raise FormInvalid(fields=problems) from exc


def field_errors(exc: DomainError, field: str | None = None) -> dict[str, str]:
    """Error messages keyed by form field; "" holds the ones about the whole form."""
    fields = exc.details.get("fields")
    if isinstance(fields, dict):
        return {str(name): str(message) for name, message in fields.items()}
    return {str(field or exc.details.get("field") or ""): exc.detail_message}


def _with_retry_after(rejected: FormRejected, exc: DomainError) -> FormRejected:
    retry_after = exc.details.get("retry_after")
    if retry_after is not None:
        rejected.response.headers["Retry-After"] = str(retry_after)
    return rejected


def reject(
    request: Request,
    template: str,
    exc: DomainError,
    context: dict[str, Any],
    errors: dict[str, str] | None = None,
) -> FormRejected:
    """The page rendered again with the error next to its field, status from the error."""
    response = page(
        request,
        template,
        {**context, "errors": field_errors(exc) if errors is None else errors},
        status_code=exc.status_code,
    )
    return _with_retry_after(FormRejected(response, exc), exc)


# --- rendering, redirects, toasts and cookies -----------------------------------------


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _take_flash(request: Request) -> str | None:
    """Move a toast left by the redirect that led here into this page; its cookie's path."""
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        note = unsign(_settings(request).signing_key, FLASH_PURPOSE, raw)
    except TokenInvalid:
        return request.url.path
    kind = note.get("kind") if note.get("kind") in ("success", "info", "error") else "info"
    request.state.toasts = [*getattr(request.state, "toasts", []), (kind, str(note.get("text")))]
    return str(note.get("path") or request.url.path)


def _forget_stale_session(request: Request, response: Response) -> None:
    if getattr(request.state, "clear_session_cookie", False):
        clear_session_cookie(request, response)


def page(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render an accounts page, showing the toast a redirect left for it."""
    flash_path = _take_flash(request)
    response = render(request, template, context, status_code=status_code)
    if flash_path:
        response.delete_cookie(FLASH_COOKIE, path=flash_path)
    _forget_stale_session(request, response)
    return response


def notice(
    request: Request,
    heading: str,
    body: str,
    actions: list[tuple[str, str]],
    icon_name: str = "check-circle",
    toast: str | None = None,
) -> HTMLResponse:
    """A one-message page (an outcome the person should read), with what to do next."""
    if toast:
        request.state.toasts = [("success", toast)]
    context = {"heading": heading, "body": body, "icon_name": icon_name, "actions": actions}
    return page(request, "accounts/notice.html", context)


def _cookie_path(url: str) -> str:
    path = urlsplit(url).path or "/"
    return path if re.fullmatch(r"/[A-Za-z0-9/_.@~-]*", path) else "/"


def redirect(request: Request, url: str, toast: Toast | None = None) -> RedirectResponse:
    """A 303 to ``url``; a toast rides along in a cookie only that page reads, once."""
    response = RedirectResponse(url, status_code=303)
    if toast is not None:
        settings = _settings(request)
        path = _cookie_path(url)
        text, kind = toast
        value = sign(
            settings.signing_key,
            FLASH_PURPOSE,
            {"text": text, "kind": kind, "path": path},
            FLASH_SECONDS,
        )
        response.set_cookie(
            FLASH_COOKIE,
            value,
            max_age=FLASH_SECONDS,
            path=path,
            httponly=True,
            samesite="lax",
            secure=settings.cookies_secure,
        )
    _forget_stale_session(request, response)
    return response


def _toast_trigger(toast: Toast) -> str:
    """An HX-Trigger header value that makes app.js show ``toast``."""
    text, kind = toast
    return json.dumps({"craftreel:toast": {"message": text, "kind": kind}})


def safe_next(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this site; anything else (``//evil``, URLs) is ignored."""
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(ord(c) < 32 or ord(c) == 127 for c in target)
    ):
        return target
    return default


def set_session_cookie(request: Request, response: Response, cookie: str | None) -> None:
    if not cookie:
        raise RuntimeError("a web session always has a cookie value")
    settings = _settings(request)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=settings.web_session_days * 24 * 60 * 60,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.cookies_secure,
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_settings(request).cookies_secure,
    )


def _social_options(settings: Settings) -> list[dict[str, Any]]:
    """Google and Apple, each offered only when this server has a client id for it."""
    ready = configured_providers(settings)
    return [
        {"name": name, "title": title, "ready": name in ready}
        for name, title in SOCIAL_TITLES.items()
    ]


def _ago(moment: datetime, now: datetime) -> str:
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 90:
        return "just now"
    for size, unit in ((86400 * 30, "month"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    return "just now"


def _device_label(user_agent: str, kind: str) -> str:
    """A person's name for a device ("Chrome on Android") from its user agent."""
    if kind == SessionKind.API and not user_agent:
        return "Craftreel app"
    ua = user_agent.lower()
    browser = next(
        (
            name
            for key, name in (
                ("edg/", "Edge"),
                ("firefox/", "Firefox"),
                ("fxios", "Firefox"),
                ("crios", "Chrome"),
                ("chrome/", "Chrome"),
                ("chromium", "Chromium"),
                ("safari/", "Safari"),
                ("python-httpx", "Craftreel client"),
            )
            if key in ua
        ),
        None,
    )
    system = next(
        (
            name
            for key, name in (
                ("iphone", "iPhone"),
                ("ipad", "iPad"),
                ("android", "Android"),
                ("mac os", "Mac"),
                ("windows", "Windows"),
                ("cros", "ChromeOS"),
                ("linux", "Linux"),
            )
            if key in ua
        ),
        None,
    )
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "Unknown device"


# --- sign up and sign in --------------------------------------------------------------


def _auth_context(request: Request, values: dict[str, str]) -> dict[str, Any]:
    return {
        "values": values,
        "errors": {},
        "social": _social_options(_settings(request)),
        "next": safe_next(values.get("next"), ""),
    }


@router.get("/signup")
async def sign_up_page(request: Request, viewer: WebOptionalIdentity) -> Response:
    """The sign-up form (someone already signed in goes home)."""
    if viewer is not None:
        return redirect(request, "/")
    return page(request, "accounts/signup.html", _auth_context(request, {}))


@router.post("/signup")
async def sign_up(
    request: Request,
    ctx: Ctx,
    uow: Uow,
    client: ClientInfo,
    email: Text = "",
    handle: Text = "",
    password: Text = "",
    display_name: Text = "",
) -> Response:
    """Create the account, sign it in on this browser, and ask for the emailed link."""
    values = {"email": email, "handle": handle, "display_name": display_name}
    try:
        body = parse_form(
            schemas.SignUp,
            email=email,
            handle=handle,
            password=password,
            display_name=display_name.strip() or None,
        )
        user = await service.sign_up(ctx, uow, body, client)
        _, _, cookie = await service.sign_in_password(
            ctx, uow, body.email, body.password, SessionKind.WEB, client
        )
    except DomainError as exc:
        raise reject(request, "accounts/signup.html", exc, _auth_context(request, values)) from exc
    response = redirect(
        request, "/verify", (f"Welcome to Craftreel, {user.display_name}!", "success")
    )
    set_session_cookie(request, response, cookie)
    return response


@router.get("/signin")
async def sign_in_page(
    request: Request, viewer: WebOptionalIdentity, next_path: NextQuery = ""
) -> Response:
    """The sign-in form; ``next`` is where to go after (a path on this site only)."""
    if viewer is not None:
        return redirect(request, safe_next(next_path))
    return page(request, "accounts/signin.html", _auth_context(request, {"next": next_path}))


@router.post("/signin")
async def sign_in(
    request: Request,
    ctx: Ctx,
    uow: Uow,
    client: ClientInfo,
    email: Text = "",
    password: Text = "",
    next_path: NextPath = "",
) -> Response:
    values = {"email": email, "next": next_path}
    try:
        _, _, cookie = await service.sign_in_password(
            ctx, uow, email, password, SessionKind.WEB, client
        )
    except DomainError as exc:
        raise reject(request, "accounts/signin.html", exc, _auth_context(request, values)) from exc
    response = redirect(request, safe_next(next_path))
    set_session_cookie(request, response, cookie)
    return response


@router.post("/signout")
async def sign_out(request: Request, viewer: WebOptionalIdentity, uow: Uow) -> Response:
    """End this browser's session."""
    if viewer is not None:
        await service.sign_out(uow, viewer)
    response = redirect(request, "/signin", ("You’re signed out.", "info"))
    clear_session_cookie(request, response)
    return response


# --- email links ------------------------------------------------------------------------


def _link_failed(
    request: Request, exc: DomainError, purpose: str, viewer: service.Identity | None
) -> FormRejected:
    context: dict[str, Any] = {"purpose": purpose, "code": exc.code}
    if viewer is not None:
        context["email_verified"] = viewer.user.email_verified
    return reject(request, "accounts/link_error.html", exc, context)


@router.get("/verify")
@writes_on_get
async def verify(
    request: Request, viewer: WebOptionalIdentity, ctx: Ctx, uow: Uow, token: str = ""
) -> Response:
    """Open the emailed link (``token``), or without one: where your email stands."""
    if not token:
        if viewer is None:
            raise NotAuthenticated()
        return page(request, "accounts/verify_status.html", {"me": service.me(ctx, viewer.user)})
    try:
        user = await service.verify_email(ctx, uow, token)
    except DomainError as exc:
        raise _link_failed(request, exc, "verify", viewer) from exc
    return notice(
        request,
        "Your email is confirmed",
        f"Thanks — {user.email} is confirmed for @{user.handle}.",
        [("Finish your profile", "/settings/profile"), ("Go home", "/")]
        if viewer
        else [("Sign in and finish your profile", "/signin?next=/settings/profile")],
        toast="Your email is confirmed.",
    )


@router.post("/verify/resend")
async def resend_verification(
    request: Request, identity: WebIdentity, ctx: Ctx, uow: Uow, client: ClientInfo
) -> Response:
    user = identity.user
    try:
        await service.resend_verification(ctx, uow, user, client)
    except DomainError as exc:
        raise reject(
            request, "accounts/verify_status.html", exc, {"me": service.me(ctx, user)}
        ) from exc
    if user.email_verified:
        return redirect(request, "/verify", ("Your email is already confirmed.", "info"))
    return redirect(request, "/verify", (f"We sent a new link to {user.email}.", "success"))


@router.get("/forgot")
async def forgot_page(request: Request, viewer: WebOptionalIdentity, sent: str = "") -> Response:
    """Ask for a password reset link (``sent``: the link is on its way)."""
    context = {"sent": bool(sent), "values": {}, "errors": {}}
    return page(request, "accounts/forgot.html", context)


@router.post("/forgot")
async def forgot(
    request: Request, ctx: Ctx, uow: Uow, client: ClientInfo, email: Text = ""
) -> Response:
    """Mail a reset link if the account exists; the answer is the same either way."""
    try:
        body = parse_form(schemas.ForgotPassword, email=email)
        await service.request_password_reset(ctx, uow, body.email, client)
    except DomainError as exc:
        context = {"sent": False, "values": {"email": email}}
        raise reject(request, "accounts/forgot.html", exc, context) from exc
    return redirect(request, "/forgot?sent=1")


@router.get("/reset")
async def reset_page(request: Request, viewer: WebOptionalIdentity, token: str = "") -> Response:
    """Choose a new password from an emailed link."""
    if not token:
        return redirect(request, "/forgot")
    return page(request, "accounts/reset.html", {"token": token, "errors": {}})


@router.post("/reset")
async def reset(
    request: Request,
    viewer: WebOptionalIdentity,
    ctx: Ctx,
    uow: Uow,
    token: Text = "",
    password: Text = "",
) -> Response:
    """Set the new password; every session ends, so the person signs in again."""
    try:
        body = parse_form(schemas.ResetPassword, token=token, password=password)
        await service.reset_password(ctx, uow, body.token, body.password)
    except TokenInvalid as exc:
        raise _link_failed(request, exc, "reset", viewer) from exc
    except DomainError as exc:
        raise reject(request, "accounts/reset.html", exc, {"token": token}) from exc
    response = redirect(
        request, "/signin", ("Your password is changed. Sign in with it now.", "success")
    )
    clear_session_cookie(request, response)
    return response


@router.get("/verify-email-change")
@writes_on_get
async def confirm_email_change(
    request: Request, viewer: WebOptionalIdentity, ctx: Ctx, uow: Uow, token: str = ""
) -> Response:
    """Open the link mailed to a new address: the account's email becomes that address."""
    try:
        user = await service.confirm_email_change(ctx, uow, token)
    except DomainError as exc:
        raise _link_failed(request, exc, "email_change", viewer) from exc
    return notice(
        request,
        "Your email is changed",
        f"@{user.handle} now uses {user.email} to sign in and for mail from us.",
        [("Account settings", "/settings/account")] if viewer else [("Sign in", "/signin")],
        toast="Your email is changed.",
    )


# --- social sign-in ---------------------------------------------------------------------


def _authorize_params(name: str) -> dict[str, str]:
    # Apple does not hand out an ID token alone and knows no "profile" scope; Google
    # refuses any scope it does not know, "name" among them.
    if name == "apple":
        return {"response_type": "code id_token", "scope": "openid email name"}
    return {"response_type": "id_token", "scope": "openid email profile"}


def _social_cookie_samesite(settings: Settings) -> Literal["none", "lax"]:
    # The provider posts back cross-site, which carries only a SameSite=None cookie, and
    # browsers keep those only when Secure (HTTPS). Plain-HTTP development falls back to Lax.
    return "none" if settings.cookies_secure else "lax"


@router.get("/auth/{provider}/start")
async def social_start(provider: str, request: Request, next_path: NextQuery = "") -> Response:
    """Send the browser to Google or Apple, with a fresh nonce and state kept in a cookie."""
    settings = _settings(request)
    found = provider_named(settings, provider)
    nonce, state = new_token(24), new_token(24)
    ticket = sign(
        settings.signing_key,
        SOCIAL_PURPOSE,
        {"provider": found.name, "nonce": nonce, "state": state, "next": safe_next(next_path)},
        SOCIAL_SECONDS,
    )
    base_url = str(settings.base_url).rstrip("/")
    params = {
        "client_id": found.client_id,
        "redirect_uri": f"{base_url}/auth/{found.name}/callback",
        "response_mode": "form_post",
        "nonce": nonce,
        "state": state,
        **_authorize_params(found.name),
    }
    response = RedirectResponse(
        f"{found.authorize_url}?{urlencode(params, quote_via=quote)}", status_code=303
    )
    response.set_cookie(
        SOCIAL_COOKIE,
        ticket,
        max_age=SOCIAL_SECONDS,
        path=f"/auth/{found.name}/callback",
        httponly=True,
        samesite=_social_cookie_samesite(settings),
        secure=settings.cookies_secure,
    )
    return response


@provider_callback_router.post("/auth/{provider}/callback")
async def social_callback(
    provider: str,
    request: Request,
    ctx: Ctx,
    uow: Uow,
    client: ClientInfo,
    id_token: Text = "",
    state: Text = "",
    error: Text = "",
) -> Response:
    """The provider's answer: check the state, then sign in with its ID token."""
    settings = _settings(request)
    title = SOCIAL_TITLES.get(provider, provider)
    ticket = request.cookies.get(SOCIAL_COOKIE, "")
    callback_path = f"/auth/{provider}/callback"
    next_path = "/"
    try:
        if error:
            raise SocialTokenInvalid(f"Signing in with {title} was cancelled. Try again.")
        try:
            started = unsign(settings.signing_key, SOCIAL_PURPOSE, ticket)
        except TokenInvalid as exc:
            raise SocialTokenInvalid(
                f"That sign-in with {title} took too long or began elsewhere. Try again."
            ) from exc
        if started.get("provider") != provider or not hmac.compare_digest(
            str(started.get("state", "")), state
        ):
            raise SocialTokenInvalid("That sign-in attempt does not match this one. Try again.")
        next_path = safe_next(str(started.get("next") or "/"))
        _, _, cookie = await service.social_sign_in(
            ctx, uow, provider, id_token, str(started["nonce"]), SessionKind.WEB, client
        )
    except DomainError as exc:
        rejected = reject(
            request,
            "accounts/signin.html",
            exc,
            _auth_context(request, {}),
            errors={"": exc.detail_message},
        )
        rejected.response.delete_cookie(SOCIAL_COOKIE, path=callback_path)
        raise rejected from exc
    response = redirect(request, next_path)
    response.delete_cookie(SOCIAL_COOKIE, path=callback_path)
    set_session_cookie(request, response, cookie)
    return response


# --- people ---------------------------------------------------------------------------


def _people_tab(is_self: bool) -> str:
    # The Profile tab is "me": someone else's profile is a place Discover led to.
    return "profile" if is_self else "discover"


@router.get("/people")
async def people(
    request: Request,
    viewer: WebOptionalIdentity,
    ctx: Ctx,
    uow: Uow,
    q: str = "",
    cursor: str | None = None,
) -> Response:
    """Search people by handle or name."""
    query = q.strip()[:80]
    found, next_cursor = await service.search_people(
        ctx, uow, viewer.user if viewer else None, query, cursor, PAGE_SIZE
    )
    more_url = f"/people?{urlencode({'q': query, 'cursor': next_cursor})}" if next_cursor else None
    context = {"q": query, "people": found, "more_url": more_url, "active_tab": "discover"}
    if _is_htmx(request) and cursor:
        return page(request, "accounts/_people_rows.html", context)
    return page(request, "accounts/people.html", context)


@router.get("/@{handle}")
async def profile(
    handle: str, request: Request, viewer: WebOptionalIdentity, ctx: Ctx, uow: Uow
) -> Response:
    """A person's public profile."""
    person = await service.profile(ctx, uow, viewer.user if viewer else None, handle)
    is_self = viewer is not None and viewer.user.id == person.id
    return page(
        request,
        "accounts/profile.html",
        {"profile": person, "is_self": is_self, "active_tab": _people_tab(is_self)},
    )


async def _connections(
    request: Request,
    viewer: service.Identity | None,
    ctx: Ctx,
    uow: Uow,
    handle: str,
    direction: Literal["followers", "following"],
    cursor: str | None,
) -> Response:
    try:
        person, found, next_cursor = await service.connections(
            ctx, uow, viewer.user if viewer else None, handle, direction, cursor, PAGE_SIZE
        )
    except PermissionDenied as exc:
        context = {"handle": handle, "direction": direction, "private": True, "people": []}
        raise reject(request, "accounts/connections.html", exc, context) from exc
    more_url = f"/@{person.handle}/{direction}?cursor={quote(next_cursor)}" if next_cursor else None
    context = {
        "person": service.summary(ctx, person),
        "handle": person.handle,
        "direction": direction,
        "people": found,
        "more_url": more_url,
        "private": False,
        "active_tab": _people_tab(viewer is not None and viewer.user.id == person.id),
    }
    if _is_htmx(request) and cursor:
        return page(request, "accounts/_people_rows.html", context)
    return page(request, "accounts/connections.html", context)


@router.get("/@{handle}/followers")
async def followers(
    handle: str,
    request: Request,
    viewer: WebOptionalIdentity,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
) -> Response:
    return await _connections(request, viewer, ctx, uow, handle, "followers", cursor)


@router.get("/@{handle}/following")
async def following(
    handle: str,
    request: Request,
    viewer: WebOptionalIdentity,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
) -> Response:
    return await _connections(request, viewer, ctx, uow, handle, "following", cursor)


async def _relationship_changed(
    request: Request,
    ctx: Ctx,
    uow: Uow,
    identity: service.Identity,
    handle: str,
    next_path: str,
    toast: Toast,
) -> Response:
    """htmx gets the profile's new follow button (and counts); a plain form, a redirect."""
    if _is_htmx(request):
        person = await service.profile(ctx, uow, identity.user, handle)
        response = page(
            request, "accounts/_follow_button.html", {"profile": person, "oob_counts": True}
        )
        response.headers["HX-Trigger"] = _toast_trigger(toast)
        return response
    return redirect(request, safe_next(next_path, f"/@{handle}"), toast)


@router.post("/@{handle}/follow")
async def follow(
    handle: str,
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    next_path: NextPath = "",
) -> Response:
    """Follow someone, or ask to when their account is private."""
    result = await service.follow(uow, identity.user, handle)
    toast: Toast = (
        (f"Request sent to @{handle}.", "info")
        if result.status == "pending"
        else (f"You follow @{handle}.", "success")
    )
    return await _relationship_changed(request, ctx, uow, identity, handle, next_path, toast)


@router.post("/@{handle}/unfollow")
async def unfollow(
    handle: str,
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    next_path: NextPath = "",
) -> Response:
    """Stop following someone, or withdraw a request."""
    await service.unfollow(uow, identity.user, handle)
    toast: Toast = (f"You no longer follow @{handle}.", "info")
    return await _relationship_changed(request, ctx, uow, identity, handle, next_path, toast)


@router.post("/@{handle}/block")
async def block(handle: str, request: Request, identity: WebIdentity, uow: Uow) -> Response:
    """Block someone. Their profile is then hidden from me too, so I land in privacy settings."""
    await service.block(uow, identity.user, handle)
    return redirect(
        request,
        "/settings/privacy",
        (f"You blocked @{handle}. Unblock them here any time.", "success"),
    )


@router.post("/@{handle}/unblock")
async def unblock(
    handle: str,
    request: Request,
    identity: WebIdentity,
    uow: Uow,
    next_path: NextPath = "",
) -> Response:
    await service.unblock(uow, identity.user, handle)
    return redirect(
        request, safe_next(next_path, f"/@{handle}"), (f"You unblocked @{handle}.", "success")
    )


# --- settings -------------------------------------------------------------------------


@router.get("/settings")
async def settings_hub(request: Request, identity: WebIdentity, ctx: Ctx) -> Response:
    """Links to every settings page."""
    return page(
        request,
        "accounts/settings.html",
        {"me": service.me(ctx, identity.user), "active_tab": "profile"},
    )


def _profile_values(me: schemas.Me) -> dict[str, Any]:
    return {
        "display_name": me.display_name,
        "handle": me.handle,
        "bio": me.bio,
        "links": "\n".join(me.links),
        "is_maker": me.is_maker,
    }


def _profile_context(me: schemas.Me, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "me": me,
        "values": values,
        "errors": {},
        "max_links": MAX_LINKS,
        "active_tab": "profile",
    }


def _links_of(text: str) -> list[str]:
    """One link a line; a bare "example.com/me" gets https:// in front."""
    links = [line.strip() for line in text.splitlines() if line.strip()]
    return [link if "://" in link else f"https://{link}" for link in links]


@router.get("/settings/profile")
async def profile_settings(request: Request, identity: WebIdentity, ctx: Ctx) -> Response:
    me = service.me(ctx, identity.user)
    return page(
        request, "accounts/settings_profile.html", _profile_context(me, _profile_values(me))
    )


@router.post("/settings/profile")
async def save_profile(
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    display_name: Text = "",
    handle: Text = "",
    bio: Text = "",
    links: Text = "",
    is_maker: Text = "",
    avatar: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Save the profile and, when a photo is chosen, the avatar: both or neither."""
    user = identity.user
    values = {
        "display_name": display_name,
        "handle": handle,
        "bio": bio,
        "links": links,
        "is_maker": bool(is_maker),
    }
    me_before = service.me(ctx, user)
    try:
        body = parse_form(
            schemas.ProfileUpdate,
            display_name=display_name,
            handle=handle.strip().lstrip("@"),
            bio=bio,
            links=_links_of(links),
            is_maker=bool(is_maker),
        )
        await service.update_profile(ctx, uow, user, body)
    except DomainError as exc:
        context = _profile_context(me_before, values)
        raise reject(request, "accounts/settings_profile.html", exc, context) from exc
    if avatar is not None and avatar.filename:
        try:
            data = await read_upload(avatar, ctx.settings.avatar_max_bytes)
            await service.set_avatar(ctx, uow, user, data)
        except DomainError as exc:
            context = _profile_context(me_before, values)
            errors = field_errors(exc, field="avatar")
            raise reject(
                request, "accounts/settings_profile.html", exc, context, errors=errors
            ) from exc
    return redirect(request, "/settings/profile", ("Your profile is saved.", "success"))


@router.post("/settings/profile/avatar/remove")
async def remove_avatar(request: Request, identity: WebIdentity, ctx: Ctx, uow: Uow) -> Response:
    await service.remove_avatar(ctx, uow, identity.user)
    return redirect(request, "/settings/profile", ("Your photo is removed.", "success"))


async def _privacy_context(
    ctx: Ctx, uow: Uow, identity: service.Identity, values: dict[str, Any]
) -> dict[str, Any]:
    return {
        "me": service.me(ctx, identity.user),
        "values": values,
        "errors": {},
        "blocked": await service.blocked_people(ctx, uow, identity.user),
        "active_tab": "profile",
    }


@router.get("/settings/privacy")
async def privacy_settings(request: Request, identity: WebIdentity, ctx: Ctx, uow: Uow) -> Response:
    user = identity.user
    values = {
        "is_private": user.is_private,
        "message_policy": user.message_policy,
        "hide_from_search": user.hide_from_search,
    }
    context = await _privacy_context(ctx, uow, identity, values)
    return page(request, "accounts/settings_privacy.html", context)


@router.post("/settings/privacy")
async def save_privacy(
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    is_private: Text = "",
    message_policy: Text = "everyone",
    hide_from_search: Text = "",
) -> Response:
    values = {
        "is_private": bool(is_private),
        "message_policy": message_policy,
        "hide_from_search": bool(hide_from_search),
    }
    try:
        body = parse_form(schemas.PrivacyUpdate, **values)
        was_private = identity.user.is_private
        await service.update_privacy(uow, identity.user, body)
    except DomainError as exc:
        context = await _privacy_context(ctx, uow, identity, values)
        raise reject(request, "accounts/settings_privacy.html", exc, context) from exc
    toast = "Your privacy settings are saved."
    if was_private and not body.is_private:
        toast = "Your account is public, and everyone who asked now follows you."
    return redirect(request, "/settings/privacy", (toast, "success"))


@router.get("/settings/requests")
async def follow_requests(
    request: Request, identity: WebIdentity, ctx: Ctx, uow: Uow, cursor: str | None = None
) -> Response:
    """People who asked to follow my private account."""
    found, next_cursor = await service.follow_requests(ctx, uow, identity.user, cursor, PAGE_SIZE)
    more_url = f"/settings/requests?cursor={quote(next_cursor)}" if next_cursor else None
    context = {
        "people": found,
        "more_url": more_url,
        "requests": True,
        "me": service.me(ctx, identity.user),
        "active_tab": "profile",
    }
    if _is_htmx(request) and cursor:
        return page(request, "accounts/_people_rows.html", context)
    return page(request, "accounts/settings_requests.html", context)


async def _answer_request(
    request: Request, identity: service.Identity, uow: Uow, handle: str, approve: bool
) -> Response:
    await service.answer_request(uow, identity.user, handle, approve=approve)
    text = f"@{handle} now follows you." if approve else f"You declined @{handle}."
    if _is_htmx(request):
        # The row goes away; the toast says what happened.
        return HTMLResponse("", headers={"HX-Trigger": _toast_trigger((text, "success"))})
    return redirect(request, "/settings/requests", (text, "success"))


@router.post("/settings/requests/{handle}/approve")
async def approve_request(
    handle: str, request: Request, identity: WebIdentity, uow: Uow
) -> Response:
    return await _answer_request(request, identity, uow, handle, approve=True)


@router.post("/settings/requests/{handle}/decline")
async def decline_request(
    handle: str, request: Request, identity: WebIdentity, uow: Uow
) -> Response:
    return await _answer_request(request, identity, uow, handle, approve=False)


@router.get("/settings/sessions")
async def sessions(request: Request, identity: WebIdentity, uow: Uow) -> Response:
    """Where I am signed in, and a way to end each."""
    now = utcnow()
    rows = [
        {
            "id": s.id,
            "device": _device_label(s.device, s.kind),
            "kind": s.kind,
            "ip": s.ip,
            "last_seen": _ago(s.last_seen_at, now),
            "signed_in": s.created_at.strftime("%-d %b %Y"),
            "current": s.current,
        }
        for s in await service.list_sessions(uow, identity)
    ]
    rows.sort(key=lambda row: not row["current"])
    return page(
        request, "accounts/settings_sessions.html", {"sessions": rows, "active_tab": "profile"}
    )


@router.post("/settings/sessions/{session_id}/revoke")
async def revoke_session(
    session_id: str, request: Request, identity: WebIdentity, uow: Uow
) -> Response:
    """Sign a device out (this one too, which is signing out)."""
    try:
        session_uuid = UUID(session_id)
    except ValueError as exc:
        raise NotFound("No such session.") from exc
    await service.revoke_session(uow, identity, session_uuid)
    if session_uuid == identity.session.id:
        response = redirect(request, "/signin", ("You’re signed out.", "info"))
        clear_session_cookie(request, response)
        return response
    return redirect(request, "/settings/sessions", ("That device is signed out.", "success"))


def _account_context(
    ctx: Ctx,
    identity: service.Identity,
    failed: str | None = None,
    values: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "me": service.me(ctx, identity.user),
        "has_password": identity.user.password_hash is not None,
        "failed": failed,
        "values": values or {},
        "errors": {},
        "active_tab": "profile",
    }


@router.get("/settings/account")
async def account_settings(request: Request, identity: WebIdentity, ctx: Ctx) -> Response:
    """Email, password, export and deletion."""
    return page(request, "accounts/settings_account.html", _account_context(ctx, identity))


@router.post("/settings/account/email")
async def change_email(
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    new_email: Text = "",
    password: Text = "",
) -> Response:
    """Ask to change the email; it changes once the link sent to the new one is opened."""
    try:
        body = parse_form(schemas.ChangeEmail, new_email=new_email, password=password or "-")
        await service.request_email_change(ctx, uow, identity, body.new_email, password)
    except DomainError as exc:
        context = _account_context(ctx, identity, "email", {"new_email": new_email})
        raise reject(request, "accounts/settings_account.html", exc, context) from exc
    return redirect(
        request,
        "/settings/account",
        (f"Check {body.new_email} for a link to confirm the change.", "success"),
    )


@router.post("/settings/account/password")
async def change_password(
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    current_password: Text = "",
    new_password: Text = "",
) -> Response:
    """Change the password; every other session ends."""
    try:
        await service.change_password(ctx, uow, identity, current_password, new_password)
    except DomainError as exc:
        context = _account_context(ctx, identity, "password")
        # The rules call the new one "password"; this form has two.
        errors = {
            ("new_password" if name == "password" else name): message
            for name, message in field_errors(exc).items()
        }
        raise reject(
            request, "accounts/settings_account.html", exc, context, errors=errors
        ) from exc
    return redirect(
        request,
        "/settings/account",
        ("Your password is changed, and every other device is signed out.", "success"),
    )


@router.get("/settings/account/export")
async def export_data(request: Request, identity: WebIdentity, ctx: Ctx, uow: Uow) -> Response:
    """Download everything the accounts feature keeps about me, as JSON."""
    data = await service.export_data(ctx, uow, identity.user)
    filename = f"craftreel-{identity.user.handle}-{utcnow():%Y-%m-%d}.json"
    return JSONResponse(
        data,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/settings/account/delete")
async def delete_account(
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    confirm_handle: Text = "",
    password: Text = "",
) -> Response:
    """Delete the account for good and sign out everywhere."""
    try:
        await service.delete_account(ctx, uow, identity, password or None, confirm_handle)
    except DomainError as exc:
        context = _account_context(ctx, identity, "delete", {"confirm_handle": confirm_handle})
        raise reject(request, "accounts/settings_account.html", exc, context) from exc
    request.state.user = None
    response = notice(
        request,
        "Your account is deleted",
        "Your profile, email and sign-ins are gone, and every device is signed out. "
        "Thanks for the time you spent on Craftreel.",
        [("Go home", "/")],
        icon_name="spool",
    )
    clear_session_cookie(request, response)
    return response


# The callback joins ``router`` as it is (without the CSRF dependency routes declared on
# ``router`` get), so the app's one include_router serves it.
router.routes.extend(provider_callback_router.routes)
