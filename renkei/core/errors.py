"""RFC 9457 problem details: one exception type, one renderer, stable machine codes.

Every error a user or a peer can cause becomes a `Problem` with a stable `code`,
a Japanese `title` for staff and a `detail`; nothing else reaches the wire.

Each code has exactly one HTTP status, everywhere: `STATUS_OF` below is the register
of every code the project raises, and `Problem` takes the status from it (the status
a caller writes must agree; tests/core/test_problem_codes.py walks the source to keep
it so). A new code is added here first. A problem relayed from a peer keeps its code
and takes our status for it; a peer's unknown code or its internal error becomes
``peer_error`` (502), and a peer's answer we cannot verify ``bad_peer_response`` (502).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

PROBLEM_TYPE_BASE = "urn:renkei:problem:"
PROBLEM_MEDIA_TYPE = "application/problem+json"

# status → the codes that carry it. A code listed twice refuses to import.
_CODES_BY_STATUS: Final[dict[int, tuple[str, ...]]] = {
    400: (
        "invalid_http_request", "malformed_message", "wrong_message_type", "bad_authorization_header", "bad_request",
        # OAuth token endpoint (RFC 6749 §5.2 names)
        "invalid_scope", "unsupported_grant_type",
    ),
    401: (
        # node-to-node: who signed, and whether the signature holds
        "unknown_sender", "bad_signature", "bad_algorithm", "issuer_mismatch", "stale_message",
        # business systems (RFC 6750) and staff sign-in (renkei.staff.auth)
        "authentication_required", "invalid_token", "invalid_client", "bad_credentials", "totp_required",
        "totp_invalid", "totp_reused", "session_expired", "session_revoked", "session_unknown",
        "token_invalid", "token_expired",
    ),
    403: (
        "sender_not_allowed", "wrong_audience", "rule_violation", "not_a_member",
        "affair_not_permitted", "role_required", "reveal_denied", "blocked_by_rule",
        "self_approval", "not_requester", "export_needs_approval", "session_required",
        "insufficient_scope", "csrf_failed", "scope_denied", "inactive", "locked",
        "unknown_staff", "node_not_yours", "own_roles", "number_search_denied",
        # in-house sharing under the ordinance (atena)
        "ordinance_missing", "ordinance_affair_not_listed", "ordinance_system_not_for_affair",
        "ordinance_not_listed", "ordinance_not_in_force", "ordinance_not_provided",
    ),
    404: (
        "not_found", "unknown_organization", "unknown_pseudonym", "provider_pseudonym_missing",
        "unknown_serial", "unknown_atena_no", "unknown_business_atena_no", "staff_not_found",
        "token_not_found", "alert_not_found", "export_not_found", "role_request_not_found",
        "unknown_individual_number",
    ),
    405: ("method_not_allowed",),
    408: ("header_timeout", "body_timeout"),
    409: (
        "replayed_message", "duplicate_serial", "pseudonym_not_acquired", "resident_code_changed",
        "business_number_taken", "staff_exists", "own_account", "export_not_pending",
        "export_not_approved", "export_grew", "role_request_not_pending", "role_request_stale",
        # bulk imports (renkei.core.imports)
        "import_finished", "import_conflict",
        # the resident register feed: the same events applied by two requests at once
        "feed_conflict",
        # non-resident numbering: the candidates changed since they were shown
        "candidates_changed",
    ),
    413: ("body_too_large",),
    415: ("unsupported_media_type",),
    422: (
        "invalid_request", "missing_field", "too_long", "bad_date", "bad_count", "bad_items",
        "bad_values", "bad_period", "bad_kana", "missing_kana", "bad_business_numbers", "bad_business_system",
        "bad_export_params", "invalid_atena_no", "invalid_business_atena_no",
        "invalid_individual_number", "invalid_resident_code", "invalid_sex", "invalid_lg_code",
        "invalid_org_code", "invalid_affair_code", "invalid_procedure_code",
        "invalid_info_kind_code", "invalid_postal_code",
        "invalid_serial", "invalid_characters", "invalid_expiry", "invalid_fukuhon",
        "invalid_noise_file", "invalid_staff", "unknown_procedure", "unknown_info_kind",
        "unknown_export", "no_edition", "key_owner_mismatch", "key_node_not_allowed", "invalid_role",
        "role_conflict",
        "individual_number_in_filter", "unencodable_character", "cp932_unencodable",
        "unsupported_encoding", "password_policy", "bad_inquirer",
        # bulk files (renkei.core.records)
        "bad_record", "unsupported_format",
        # atena: business systems name persons by their own numbers; non-resident numbering
        "atena_no_not_accepted", "candidates_not_acknowledged", "bad_candidate",
        # J-LIS identity search on 基本4情報
        "bad_identity_query", "no_basic_four",
        # addressee search (atena)
        "bad_name", "bad_address", "bad_residence", "missing_criteria", "too_broad",
        # time-stamp authority
        "bad_stamp_request", "bad_stamp_signature", "bad_page", "head_regression", "head_conflict",
        # in-house sharing (atena): an item the ordinance does not share
        "item_not_shared",
        # the resident register feed and households (atena)
        "bad_feed", "missing_household_no", "invalid_household_no", "missing_relationship",
    ),
    429: ("rate_limited",),
    431: ("headers_too_large", "too_many_headers"),
    500: ("internal_error", "tsa_inconsistent"),
    502: ("peer_error", "bad_peer_response", "bad_answer", "wrong_responder"),
    503: ("peer_unavailable",),
}


def _status_register(by_status: Mapping[int, tuple[str, ...]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for status, codes in by_status.items():
        for code in codes:
            if code in out:
                raise RuntimeError(f"problem code {code!r} listed under {out[code]} and {status}")
            out[code] = status
    return out


STATUS_OF: Final[dict[str, int]] = _status_register(_CODES_BY_STATUS)

# Status codes Starlette itself raises (unknown route, wrong method, unparsable form),
# each with its own code; any other status gets ``http_<status>``.
_HTTP_CODES: Final[dict[int, tuple[str, str]]] = {
    400: ("bad_request", "要求の形式が誤っています。"),
    404: ("not_found", "指定された資源は存在しません。"),
    405: ("method_not_allowed", "この操作は許可されていません。"),
    413: ("body_too_large", "要求が大きすぎます。"),
    415: ("unsupported_media_type", "この形式の要求は受け付けていません。"),
}


def http_problem(status: int, detail: str = "", title: str | None = None) -> Problem:
    """The problem for an HTTP error Starlette raised: one code per status."""
    code, default = _HTTP_CODES.get(status, (f"http_{status}", "要求を処理できませんでした。"))
    return Problem(status, code, title or default, detail)


class Problem(Exception):
    """An error with a stable machine code, shown to staff in Japanese.

    ``status`` is taken from `STATUS_OF` for a registered code (the argument must
    agree with it; a test checks every call); an unregistered code keeps the argument.
    """

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str = "",
        **extra: Any,
    ) -> None:
        super().__init__(f"{code}: {title} {detail}".strip())
        self.status = STATUS_OF.get(code, status)
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
    def from_dict(cls, status: int, body: Any, source: str = "") -> Problem:
        """A peer's problem+json, to relay: its code, title, detail and extra members.

        The status is ours for the code. Anything that is not a problem with a code we
        know, and the peer's own internal error, is ``peer_error`` (502) naming the
        peer's HTTP status: a peer cannot make us answer 500, or 200, or a code we
        never documented.
        """
        code = body.get("code") if isinstance(body, dict) else None
        title = body.get("title") if isinstance(body, dict) else None
        if (
            not isinstance(body, dict)
            or not isinstance(code, str)
            or code not in STATUS_OF
            or code == "internal_error"
            or not isinstance(title, str)
            or not title.strip()
        ):
            peer_code = code if isinstance(code, str) and code.isascii() else "?"
            return cls(
                502,
                "peer_error",
                "連携先でエラーが発生しました。",
                f"{source} HTTP {status} {peer_code[:64]}".strip(),
            )
        detail = body.get("detail")
        extra = {
            k: v
            for k, v in body.items()
            if isinstance(k, str) and k.isidentifier() and k not in _RESERVED_MEMBERS
        }
        return cls(STATUS_OF[code], code, title, detail if isinstance(detail, str) else "", **extra)


# Members of a problem body that are not extra members, and the constructor's own names.
_RESERVED_MEMBERS: Final = frozenset({"type", "title", "status", "code", "detail", "self", "extra"})


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
        return problem_response(http_problem(exc.status_code, str(exc.detail or "")))

    app.add_middleware(CatchUnexpected)


def unexpected(exc: Exception, logger: str = "renkei", **where: Any) -> Problem:
    """Log an unexpected exception by its type only (its message or SQL parameters may
    hold personal data) and return the generic 500 problem that answers it."""
    import structlog

    structlog.get_logger(logger).error("unexpected_error", error_type=type(exc).__name__, **where)
    return Problem(500, "internal_error", "システム内部でエラーが発生しました。管理者に連絡してください。")


class CatchUnexpected:
    """An unexpected exception becomes a generic 500 problem, with only its type logged.

    Caught here rather than in an exception handler: Starlette re-raises after handlers,
    and the server would log a traceback whose SQL parameters may hold personal data.
    A plain ASGI middleware (not `BaseHTTPMiddleware`, which costs a task and a stream
    per request on every route).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            problem = unexpected(exc, path=scope.get("path", ""))
            if not started:  # else the answer is under way: the connection just ends
                await problem_response(problem)(scope, receive, send)
