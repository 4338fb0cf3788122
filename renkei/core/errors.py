"""RFC 9457 problem details: one exception type, one renderer, stable machine codes.

Every error a user or a peer can cause becomes a `Problem` with a stable `code`,
a Japanese `title` for staff and a `detail`; nothing else reaches the wire.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

PROBLEM_TYPE_BASE = "urn:renkei:problem:"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """An error with a stable machine code, shown to staff in Japanese."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str = "",
        **extra: Any,
    ) -> None:
        super().__init__(f"{code}: {title} {detail}".strip())
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "code": self.code,
        }
        if self.detail:
            body["detail"] = self.detail
        body.update(self.extra)
        return body

    @classmethod
    def from_dict(cls, status: int, body: dict[str, Any]) -> Problem:
        extra = {k: v for k, v in body.items() if k not in {"type", "title", "status", "code", "detail"}}
        return cls(
            status=int(body.get("status", status)),
            code=str(body.get("code", "peer_error")),
            title=str(body.get("title", "連携先でエラーが発生しました。")),
            detail=str(body.get("detail", "")),
            **extra,
        )


def problem_response(problem: Problem) -> Response:
    return JSONResponse(problem.to_dict(), status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE)


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Pydantic's own messages are English; keep them as detail, never the input value
    # itself, which may be an individual number.
    out = []
    for err in exc.errors():
        out.append({"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))})
    return out


def install_problem_handlers(app: FastAPI) -> None:
    """Render every error as problem+json; unexpected ones as a generic 500 without internals."""

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> Response:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        return problem_response(
            Problem(
                422,
                "invalid_request",
                "入力内容に誤りがあります。",
                "項目の形式を確認してください。",
                errors=_validation_detail(exc),
            )
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        titles = {
            404: ("not_found", "指定された資源は存在しません。"),
            405: ("method_not_allowed", "この操作は許可されていません。"),
        }
        code, title = titles.get(exc.status_code, ("http_error", "要求を処理できませんでした。"))
        return problem_response(Problem(exc.status_code, code, title, str(exc.detail or "")))

    @app.middleware("http")
    async def _unexpected(request: Request, call_next: Any) -> Response:
        # Catch here rather than in an exception handler: Starlette re-raises after
        # handlers, and the server would log a traceback whose SQL parameters may hold
        # personal data. Only the exception type is logged.
        try:
            response: Response = await call_next(request)
            return response
        except Exception as exc:
            import structlog

            structlog.get_logger("renkei").error(
                "unexpected_error", error_type=type(exc).__name__, path=request.url.path
            )
            return problem_response(
                Problem(500, "internal_error", "システム内部でエラーが発生しました。管理者に連絡してください。")
            )
