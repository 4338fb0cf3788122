"""Rendering, security headers and error pages shared by every staff screen.

Every response of the staff listener carries a strict CSP (no inline script or style:
htmx is configured by a ``<meta>`` tag), refuses framing, sends no referrer and is
``Cache-Control: no-store`` (pages show personal data; only /static is cacheable).
Errors are HTML pages (or, for htmx requests, a fragment swapped into ``#flash``)
with the Japanese message and the stable code; nothing a user sends gives a 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from jinja2_fragments.fastapi import Jinja2Blocks
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from renkei.core.errors import Problem, http_problem, unexpected
from renkei.core.text.wareki import WarekiError, to_wareki

TEMPLATES_DIR: Final = Path(__file__).parent / "templates"
STATIC_DIR: Final = Path(__file__).parent / "static"
JST: Final = timezone(timedelta(hours=9), "JST")
MAX_BODY_BYTES: Final = 64 * 1024  # staff forms are small; refuse anything larger early

CSP: Final = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS: Final[tuple[tuple[bytes, bytes], ...]] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"strict-transport-security", b"max-age=31536000"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
)
TERMINAL_WARNING: Final = "指定端末の確認（端末証明書）が無効です。本番環境では有効にしてください。"


def _wareki(value: date | datetime | None, short: bool = False) -> str:
    if value is None:
        return ""
    day = value.astimezone(JST).date() if isinstance(value, datetime) else value
    try:
        return to_wareki(day, short=short)
    except WarekiError:
        return day.isoformat()


def _jst(value: datetime | None) -> str:
    """A timestamp in Japan time, 和暦 date and HH:MM."""
    if value is None:
        return ""
    local = value.astimezone(JST)
    return f"{_wareki(local.date())} {local.hour:02d}:{local.minute:02d}"


templates = Jinja2Blocks(directory=str(TEMPLATES_DIR))
templates.env.filters["wareki"] = _wareki
templates.env.filters["jst"] = _jst
templates.env.globals["TERMINAL_WARNING"] = TERMINAL_WARNING


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    block: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A full page, or one block of it (for htmx)."""
    ctx = {"site": request.app.state.site, **context}
    if block is not None:
        return templates.TemplateResponse(
            request, name, ctx, status_code=status, headers=headers, block_name=block
        )
    return templates.TemplateResponse(request, name, ctx, status_code=status, headers=headers)


def redirect(request: Request, path: str) -> Response:
    """303 to a page of this site; htmx gets ``HX-Redirect`` (it would swap a redirect's body)."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": path})
    return RedirectResponse(path, status_code=303)


# --- errors -------------------------------------------------------------------------


class SignInRequired(Exception):
    """No valid session: back to the sign-in page, saying why (an auth error code)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PasswordChangeRequired(Exception):
    """The password expired: every page but the password change and sign-out sends there."""


def error_response(request: Request, problem: Problem) -> Response:
    context = {"problem": problem, "staff": getattr(request.state, "staff", None)}
    if is_htmx(request):
        # htmx swaps error responses too (see the meta config); put them in the flash area.
        return render(
            request,
            "error.html",
            context,
            status=problem.status,
            block="flash",
            headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"},
        )
    return render(request, "error.html", context, status=problem.status)


# Page wording for the statuses Starlette raises; the codes are core.errors' (one per status).
_HTTP_TITLES: Final = {
    404: "指定されたページは存在しません。",
    405: "この操作は許可されていません。",
}


def install_page_handlers(app: FastAPI) -> None:
    """Render errors as HTML; unexpected ones as a generic 500 without internals."""

    async def _problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return error_response(request, exc)

    async def _sign_in(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        return redirect(request, f"/login?reason={quote(exc.reason)}")

    async def _password(request: Request, exc: Exception) -> Response:
        return redirect(request, "/password")

    async def _invalid(request: Request, exc: Exception) -> Response:
        return error_response(
            request,
            Problem(422, "invalid_request", "入力内容に誤りがあります。", "項目の形式を確認してください。"),
        )

    async def _http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(request, http_problem(exc.status_code, title=_HTTP_TITLES.get(exc.status_code)))

    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(SignInRequired, _sign_in)
    app.add_exception_handler(PasswordChangeRequired, _password)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)

    @app.middleware("http")
    async def _unexpected(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # As in core.errors: only the exception type is logged (SQL parameters may hold
        # personal data), and the page says nothing about internals.
        try:
            return await call_next(request)
        except Exception as exc:
            return error_response(request, unexpected(exc, "renkei.web", path=request.url.path))


# --- security headers and body limit -----------------------------------------------------


class SecurityHeaders:
    """Pure ASGI middleware: security headers on every response, a cap on request bodies."""

    def __init__(self, app: ASGIApp, *, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await _too_large(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _BodyTooLarge
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {b"cache-control", b"pragma"}
                ]
                headers.extend(SECURITY_HEADERS)
                headers.append((b"cache-control", b"no-cache" if static else b"no-store"))
                if not static:
                    headers.append((b"pragma", b"no-cache"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except _BodyTooLarge:
            if not started:
                await _too_large(send)


class _BodyTooLarge(Exception):
    pass


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send) -> None:
    body = (
        "<!doctype html><html lang=\"ja\"><meta charset=\"utf-8\"><title>送信内容が大きすぎます</title>"
        "<p>送信内容が大きすぎます（code: body_too_large）。</p></html>"
    ).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *SECURITY_HEADERS,
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
