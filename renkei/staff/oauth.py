"""OAuth 2.0 client credentials for business systems (庁内データ連携, 共通機能標準仕様書 §2.2.5).

The profile the standard fixes for REST calls between business systems:

- grant: client credentials only (RFC 6749 §4.4); access tokens only, never a refresh token;
- client authentication: ``client_secret_jwt`` (RFC 7523 §2.2, OIDC Core §9): an HS256 JWT
  signed with the client secret, ``iss`` = ``sub`` = client_id, ``aud`` = the token endpoint
  URL, ``iat``, ``exp`` at most five minutes after ``iat`` (`MAX_ASSERTION_LIFETIME_S`;
  clocks may differ by `CLOCK_SKEW_S`), and a ``jti`` that is single-use until its
  ``exp``. Standard clients work with their lifetime set accordingly: authlib's
  ``ClientSecretJWT`` signs for 3600 s by default, which is refused
  (``assertion_lifetime_too_long``) — pass ``expires_in=300`` or less to
  ``client_secret_jwt_sign`` (tests/atena/test_oauth_client.py does);
- short-lived opaque bearer tokens (RFC 6750), of which only a SHA-256 is stored;
- scopes ``${業務システムID}:${リソース名}:${操作名}``;
- token introspection for resource servers (RFC 7662).

Secrets are stored encrypted with the caller's :class:`FieldCipher` (HS256 needs the secret
itself, so it cannot be hashed). Neither secrets, assertions nor tokens are ever logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qsl

import structlog
from fastapi import APIRouter, Request
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import OctKey
from joserfc.jws import JWSRegistry
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from renkei.core.crypto.field import FieldCipher
from renkei.core.db import UtcDateTime, utcnow
from renkei.core.errors import PROBLEM_MEDIA_TYPE, Problem

__all__ = [
    "ASSERTION_ALG",
    "CLIENT_ASSERTION_TYPE",
    "DEFAULT_TOKEN_LIFETIME_S",
    "GRANT_TYPE",
    "MAX_ASSERTION_LIFETIME_S",
    "ClientPrincipal",
    "OAuthError",
    "OAuthTables",
    "Scope",
    "TokenResponse",
    "authenticate_bearer",
    "client_of_token",
    "authenticate_client",
    "bearer_problem_response",
    "hash_token",
    "introspect",
    "issue_token",
    "make_client_assertion",
    "oauth_error_response",
    "oauth_router",
    "oauth_tables",
    "parse_scope",
    "parse_scopes",
    "purge_expired",
    "register_client",
    "revoke_client",
    "rotate_client_secret",
]

log = structlog.get_logger("renkei.oauth")

GRANT_TYPE = "client_credentials"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALG = "HS256"
DEFAULT_TOKEN_LIFETIME_S = 600
MAX_TOKEN_LIFETIME_S = 3600
DEFAULT_ASSERTION_LIFETIME_S = 60
MAX_ASSERTION_LIFETIME_S = 300
# Tolerated clock difference between a business system and this server. A jti is kept
# until exp + CLOCK_SKEW_S, the last moment its assertion can still be accepted.
CLOCK_SKEW_S = 30
SECRET_BYTES = 32  # 256 bits of entropy, 43 URL-safe characters
TOKEN_BYTES = 32
MAX_ASSERTION_CHARS = 4096
MAX_FORM_BYTES = 16 * 1024
MAX_JTI_CHARS = 255
REALM = "renkei"

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_SCOPE_PART = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}"
_SCOPE_RE = re.compile(rf"({_SCOPE_PART}):({_SCOPE_PART}):({_SCOPE_PART})")
# RFC 6750 §2.1 b64token; what we issue is the URL-safe subset of it.
_BEARER_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_ALLOWED_ASSERTION_HEADERS = frozenset({"alg", "typ", "kid"})
_JWS_REGISTRY = JWSRegistry(algorithms=[ASSERTION_ALG])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


# --- errors ---------------------------------------------------------------------------


# RFC 6750 error → problem code, where the RFC's name is one of our codes with another status.
_PROBLEM_CODES: Final = {"invalid_request": "bad_authorization_header"}


class OAuthError(Exception):
    """A refusal with an RFC 6749 / RFC 6750 error code and a Japanese message.

    ``reason`` is a finer, stable machine code for logs and tests (it never reaches the
    wire: several refusals deliberately share one public description so that a caller
    cannot tell an unknown client from a wrong secret).
    """

    def __init__(
        self,
        status: int,
        error: str,
        message_ja: str,
        *,
        reason: str = "",
        scope: str | None = None,
        challenge: bool = False,
    ) -> None:
        super().__init__(f"{error}: {reason or message_ja}")
        self.status = status
        self.error = error
        self.message_ja = message_ja
        self.reason = reason or error
        self.scope = scope
        self.challenge = challenge

    @property
    def www_authenticate(self) -> str | None:
        """The RFC 6750 §3 challenge for bearer refusals (ASCII only, so no description).

        A request without any bearer credentials gets the bare challenge (§3.1).
        """
        if not self.challenge:
            return None
        parts = [f'Bearer realm="{REALM}"']
        if self.reason != "missing_token":
            parts.append(f'error="{self.error}"')
        if self.scope:
            parts.append(f'scope="{self.scope}"')
        return ", ".join(parts)

    def response_headers(self) -> dict[str, str]:
        headers = dict(_NO_STORE)
        challenge = self.www_authenticate
        if challenge:
            headers["WWW-Authenticate"] = challenge
        return headers

    def to_dict(self) -> dict[str, str]:
        """RFC 6749 §5.2 error body."""
        return {"error": self.error, "error_description": self.message_ja}

    def to_problem(self) -> Problem:
        """The same refusal as problem+json, for resource endpoints of a node.

        The problem code is the RFC 6750 error, except ``invalid_request`` (400), which
        is our 422 for a body that fails validation: a malformed Authorization header is
        ``bad_authorization_header`` (the challenge header keeps the RFC's name).
        """
        code = _PROBLEM_CODES.get(self.error, self.error)
        return Problem(self.status, code, self.message_ja)


def oauth_error_response(exc: OAuthError) -> Response:
    """RFC 6749 §5.2 JSON error, not cacheable."""
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=exc.response_headers())


def bearer_problem_response(exc: OAuthError) -> Response:
    """A bearer refusal as problem+json with its WWW-Authenticate challenge."""
    problem = exc.to_problem()
    return JSONResponse(
        problem.to_dict(),
        status_code=problem.status,
        headers=exc.response_headers(),
        media_type=PROBLEM_MEDIA_TYPE,
    )


def _invalid_request(message: str, reason: str) -> OAuthError:
    return OAuthError(400, "invalid_request", message, reason=reason)


_CLIENT_AUTH_FAILED = "クライアント認証に失敗しました。クライアントIDとクライアントシークレットを確認してください。"


def _invalid_client(reason: str, message: str = _CLIENT_AUTH_FAILED) -> OAuthError:
    # RFC 7662 §2.1 and common practice: failed client authentication is 401.
    return OAuthError(401, "invalid_client", message, reason=reason)


def _invalid_token(reason: str, message: str) -> OAuthError:
    return OAuthError(401, "invalid_token", message, reason=reason, challenge=True)


# --- tables ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OAuthTables:
    clients: Table
    tokens: Table
    used_jtis: Table


def oauth_tables(metadata: MetaData) -> OAuthTables:
    """Registered business systems, issued tokens (hashes only) and spent assertion ids."""
    clients = Table(
        "oauth_clients",
        metadata,
        Column("client_id", String(64), primary_key=True),
        Column("system_id", String(64), nullable=False),
        Column("name", String(255), nullable=False),
        # FieldCipher blob, AAD ("oauth_clients", "secret", client_id).
        Column("secret", LargeBinary, nullable=False),
        Column("allowed_scopes", JSON, nullable=False),
        Column("active", Boolean, nullable=False, default=True),
        Column("created_at", UtcDateTime(), nullable=False),
    )
    tokens = Table(
        "oauth_tokens",
        metadata,
        Column("id", String(64), primary_key=True),  # hex SHA-256 of the access token
        Column("client_id", String(64), ForeignKey("oauth_clients.client_id"), nullable=False),
        Column("scopes", JSON, nullable=False),
        Column("issued_at", UtcDateTime(), nullable=False),
        Column("expires_at", UtcDateTime(), nullable=False),
        Column("revoked_at", UtcDateTime(), nullable=True),
    )
    Index("ix_oauth_tokens_client_id", tokens.c.client_id)
    Index("ix_oauth_tokens_expires_at", tokens.c.expires_at)
    used_jtis = Table(
        "oauth_used_jtis",
        metadata,
        Column("client_id", String(64), ForeignKey("oauth_clients.client_id"), nullable=False),
        Column("jti", String(MAX_JTI_CHARS), nullable=False),
        Column("expires_at", UtcDateTime(), nullable=False),
        PrimaryKeyConstraint("client_id", "jti"),
    )
    Index("ix_oauth_used_jtis_expires_at", used_jtis.c.expires_at)
    return OAuthTables(clients=clients, tokens=tokens, used_jtis=used_jtis)


# --- scopes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """``${業務システムID}:${リソース名}:${操作名}``."""

    system_id: str
    resource: str
    operation: str

    def __str__(self) -> str:
        return f"{self.system_id}:{self.resource}:{self.operation}"


def _shown(value: str, limit: int = 64) -> str:
    """A caller-supplied value safe to quote in a message: printable, bounded."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in value[:limit])
    return cleaned + ("…" if len(value) > limit else "")


def parse_scope(s: str) -> Scope:
    """Parse one scope; ValueError with a Japanese message when it is malformed."""
    m = _SCOPE_RE.fullmatch(s) if isinstance(s, str) else None
    if m is None:
        raise ValueError(
            f"スコープ「{_shown(str(s))}」の形式が正しくありません。"
            "「業務システムID:リソース名:操作名」の形式（英数字・_・-・.）で指定してください。"
        )
    return Scope(m.group(1), m.group(2), m.group(3))


def parse_scopes(value: str) -> list[Scope]:
    """A space-delimited scope parameter (RFC 6749 §3.3), duplicates removed, order kept."""
    out: list[Scope] = []
    for part in value.split(" "):
        if not part:
            continue
        scope = parse_scope(part)
        if scope not in out:
            out.append(scope)
    return out


# --- clients --------------------------------------------------------------------------


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("naive datetime")
    return now.astimezone(UTC)


def _check_id(value: str, label: str) -> None:
    if not isinstance(value, str) or _ID_RE.fullmatch(value) is None:
        raise ValueError(f"{label}「{_shown(str(value))}」は英数字・_・-・.の64文字以内で指定してください。")


def _secret_aad(client_id: str) -> tuple[str, str, str]:
    return ("oauth_clients", "secret", client_id)


def _new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def register_client(
    session: Session,
    tables: OAuthTables,
    cipher: FieldCipher,
    *,
    client_id: str,
    system_id: str,
    name: str,
    allowed_scopes: Sequence[str],
    now: datetime,
) -> str:
    """Register a business system; returns its new secret, which is shown only this once."""
    now = _aware(now)
    _check_id(client_id, "クライアントID")
    _check_id(system_id, "業務システムID")
    if not name or len(name) > 255:
        raise ValueError("クライアント名は1文字以上255文字以内で指定してください。")
    if isinstance(allowed_scopes, str) or not allowed_scopes:
        raise ValueError("許可するスコープを1つ以上、リストで指定してください。")
    scopes: list[str] = []
    for raw in allowed_scopes:
        scope = parse_scope(raw)
        if scope.system_id != system_id:
            raise ValueError(
                f"スコープ「{_shown(raw)}」は業務システムID「{system_id}」で始まっていません。"
            )
        if str(scope) not in scopes:
            scopes.append(str(scope))
    exists = session.execute(
        select(tables.clients.c.client_id).where(tables.clients.c.client_id == client_id)
    ).first()
    if exists is not None:
        raise ValueError(f"クライアントID「{client_id}」は既に登録されています。")
    secret = _new_secret()
    session.execute(
        insert(tables.clients).values(
            client_id=client_id,
            system_id=system_id,
            name=name,
            secret=cipher.encrypt(secret, _secret_aad(client_id)),
            allowed_scopes=scopes,
            active=True,
            created_at=now,
        )
    )
    log.info("oauth_client_registered", client_id=client_id, system_id=system_id, scopes=scopes)
    return secret


def _revoke_tokens(session: Session, tables: OAuthTables, client_id: str, now: datetime) -> int:
    t = tables.tokens
    result = session.execute(
        update(t)
        .where(t.c.client_id == client_id, t.c.revoked_at.is_(None), t.c.expires_at > now)
        .values(revoked_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _client_row(session: Session, tables: OAuthTables, client_id: str) -> RowMapping | None:
    row = session.execute(
        select(tables.clients).where(tables.clients.c.client_id == client_id)
    ).mappings().first()
    return row


def revoke_client(session: Session, tables: OAuthTables, *, client_id: str, now: datetime) -> int:
    """Deactivate a client and revoke its live tokens; returns how many tokens were revoked."""
    now = _aware(now)
    if _client_row(session, tables, client_id) is None:
        raise LookupError(f"クライアントID「{_shown(client_id)}」は登録されていません。")
    session.execute(
        update(tables.clients).where(tables.clients.c.client_id == client_id).values(active=False)
    )
    revoked = _revoke_tokens(session, tables, client_id, now)
    log.info("oauth_client_revoked", client_id=client_id, tokens_revoked=revoked)
    return revoked


def rotate_client_secret(
    session: Session,
    tables: OAuthTables,
    cipher: FieldCipher,
    *,
    client_id: str,
    now: datetime,
    revoke_tokens: bool = True,
) -> str:
    """Replace a client's secret (the old one stops working at once); returns the new one.

    By default the client's live tokens are revoked too, as they may have been obtained
    with a leaked secret; the business system simply asks for a new token.
    """
    now = _aware(now)
    row = _client_row(session, tables, client_id)
    if row is None:
        raise LookupError(f"クライアントID「{_shown(client_id)}」は登録されていません。")
    if not row["active"]:
        raise ValueError(f"クライアントID「{client_id}」は無効化されています。")
    secret = _new_secret()
    session.execute(
        update(tables.clients)
        .where(tables.clients.c.client_id == client_id)
        .values(secret=cipher.encrypt(secret, _secret_aad(client_id)))
    )
    revoked = _revoke_tokens(session, tables, client_id, now) if revoke_tokens else 0
    log.info("oauth_client_secret_rotated", client_id=client_id, tokens_revoked=revoked)
    return secret


# --- the business system's side -------------------------------------------------------


def make_client_assertion(
    client_id: str,
    secret: str,
    token_endpoint: str,
    now: datetime,
    lifetime_s: int = DEFAULT_ASSERTION_LIFETIME_S,
) -> str:
    """A ``client_secret_jwt`` assertion, as a business system builds it (RFC 7523 §3)."""
    iat = int(_aware(now).timestamp())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint,
        "iat": iat,
        "exp": iat + lifetime_s,
        "jti": secrets.token_urlsafe(16),
    }
    key = OctKey.import_key(secret.encode("utf-8"))
    return jwt.encode({"alg": ASSERTION_ALG}, claims, key, algorithms=[ASSERTION_ALG])


# --- client authentication ------------------------------------------------------------


@dataclass(frozen=True)
class ClientPrincipal:
    """An authenticated business system."""

    client_id: str
    system_id: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class _Verified:
    client: ClientPrincipal
    jti: str
    jti_expires_at: datetime


def _field(form: Mapping[str, str], name: str) -> str | None:
    """RFC 6749 §3.1: a parameter sent without a value is treated as omitted."""
    value = form.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _invalid_request(f"パラメータ {name} の形式が正しくありません。", "bad_parameter")
    return value


def _b64json(segment: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError):
        return None


def _peek(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of an unverified JWS compact serialization (for routing only)."""
    if len(assertion) > MAX_ASSERTION_CHARS or not assertion.isascii():
        raise _invalid_client("assertion_malformed", "クライアントアサーションの形式が正しくありません。")
    parts = assertion.split(".")
    if len(parts) != 3:
        raise _invalid_client("assertion_malformed", "クライアントアサーションの形式が正しくありません。")
    header, claims = _b64json(parts[0]), _b64json(parts[1])
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _invalid_client("assertion_malformed", "クライアントアサーションの形式が正しくありません。")
    return header, claims


def _verify_assertion(
    session: Session,
    tables: OAuthTables,
    cipher: FieldCipher,
    form: Mapping[str, str],
    audience: str,
    now: datetime,
) -> _Verified:
    if _field(form, "client_secret") is not None:
        raise _invalid_client(
            "unsupported_auth_method",
            "client_secret によるクライアント認証には対応していません。client_secret_jwt を使用してください。",
        )
    assertion_type = _field(form, "client_assertion_type")
    assertion = _field(form, "client_assertion")
    if assertion_type is None and assertion is None:
        raise _invalid_client(
            "missing_client_auth",
            "クライアント認証情報がありません。client_assertion_type と client_assertion を指定してください。",
        )
    if assertion_type is None:
        raise _invalid_request("パラメータ client_assertion_type を指定してください。", "missing_assertion_type")
    if assertion is None:
        raise _invalid_request("パラメータ client_assertion を指定してください。", "missing_assertion")
    if assertion_type != CLIENT_ASSERTION_TYPE:
        raise _invalid_client(
            "unsupported_assertion_type",
            f"client_assertion_type は {CLIENT_ASSERTION_TYPE} を指定してください。",
        )

    # Check the header before any key is touched: only HS256, so "none", other HMACs and
    # asymmetric algorithms never reach joserfc.
    header, unverified = _peek(assertion)
    if header.get("alg") != ASSERTION_ALG:
        raise _invalid_client(
            "bad_algorithm", f"クライアントアサーションの署名アルゴリズムは {ASSERTION_ALG} のみ使用できます。"
        )
    if not set(header) <= _ALLOWED_ASSERTION_HEADERS:
        raise _invalid_client("bad_header", "クライアントアサーションのヘッダーに使用できない項目があります。")

    iss, sub = unverified.get("iss"), unverified.get("sub")
    if not isinstance(sub, str) or not isinstance(iss, str):
        raise _invalid_client("missing_iss_sub", "クライアントアサーションに iss と sub を指定してください。")
    if iss != sub:
        raise _invalid_client("iss_sub_mismatch", "クライアントアサーションの iss と sub はクライアントIDと一致させてください。")
    client_id_param = _field(form, "client_id")
    if client_id_param is not None and client_id_param != sub:
        raise _invalid_client("client_id_mismatch", "client_id がクライアントアサーションの sub と一致しません。")

    row = _client_row(session, tables, sub) if _ID_RE.fullmatch(sub) else None
    if row is None or not row["active"]:
        # One answer for unknown, inactive and wrong secret: no client enumeration.
        raise _invalid_client("unknown_client" if row is None else "inactive_client")
    client_id = str(row["client_id"])
    secret = cipher.decrypt(bytes(row["secret"]), _secret_aad(client_id))

    try:
        token = jwt.decode(assertion, OctKey.import_key(secret.encode("utf-8")), registry=_JWS_REGISTRY)
    except BadSignatureError as err:
        raise _invalid_client("bad_signature") from err
    except JoseError as err:
        raise _invalid_client("assertion_malformed", "クライアントアサーションの形式が正しくありません。") from err

    now_s = int(now.timestamp())
    claims = token.claims
    registry = jwt.JWTClaimsRegistry(
        now=now_s,
        leeway=CLOCK_SKEW_S,
        iss={"essential": True, "value": client_id},
        sub={"essential": True, "value": client_id},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError as err:
        raise _invalid_client("assertion_expired", "クライアントアサーションの有効期限が切れています。") from err
    except MissingClaimError as err:
        raise _invalid_client(
            "missing_claim",
            "クライアントアサーションには iss・sub・aud・exp・iat・jti をすべて指定してください。",
        ) from err
    except JoseError as err:
        raise _invalid_client(
            "invalid_claim", "クライアントアサーションの内容が正しくありません（iss・sub・exp・iat・jti）。"
        ) from err

    # A single string, exactly our endpoint: an array of audiences is refused so that an
    # assertion made for another server cannot be presented here (audience injection).
    aud = claims.get("aud")
    if aud is None:
        raise _invalid_client(
            "missing_claim", "クライアントアサーションには iss・sub・aud・exp・iat・jti をすべて指定してください。"
        )
    if aud != audience:
        raise _invalid_client("wrong_audience", "クライアントアサーションの aud がトークンエンドポイントのURLと一致しません。")

    exp, iat = claims["exp"], claims["iat"]
    # The documented rule is exp - iat ≤ 5 minutes; exp is also bounded by our clock,
    # with the same skew allowance as exp and iat themselves (a client whose clock runs
    # a few seconds ahead may use the whole five minutes).
    too_far = exp > now_s + MAX_ASSERTION_LIFETIME_S + CLOCK_SKEW_S
    if too_far or exp - iat > MAX_ASSERTION_LIFETIME_S:
        raise _invalid_client(
            "assertion_lifetime_too_long",
            f"クライアントアサーションの有効期限は発行から{MAX_ASSERTION_LIFETIME_S // 60}分以内にしてください。",
        )
    if exp <= iat:
        raise _invalid_client("invalid_claim", "クライアントアサーションの exp は iat より後にしてください。")

    jti = claims["jti"]
    if not jti or len(jti) > MAX_JTI_CHARS:
        raise _invalid_client("invalid_claim", f"jti は1文字以上{MAX_JTI_CHARS}文字以内で指定してください。")
    jti_expires_at = datetime.fromtimestamp(float(exp), UTC) + timedelta(seconds=CLOCK_SKEW_S)
    u = tables.used_jtis
    seen = session.execute(
        select(u.c.jti).where(u.c.client_id == client_id, u.c.jti == jti, u.c.expires_at >= now)
    ).first()
    if seen is not None:
        raise _invalid_client("replayed_jti", "このクライアントアサーションは使用済みです（jti の再利用）。")
    principal = ClientPrincipal(
        client_id=client_id, system_id=str(row["system_id"]), scopes=tuple(row["allowed_scopes"])
    )
    return _Verified(principal, jti, jti_expires_at)


def _consume_jti(session: Session, tables: OAuthTables, verified: _Verified, now: datetime) -> None:
    """Record the jti; a concurrent twin loses on the primary key."""
    u = tables.used_jtis
    client_id = verified.client.client_id
    # A spent jti may be used again once its assertion has expired.
    session.execute(
        delete(u).where(u.c.client_id == client_id, u.c.jti == verified.jti, u.c.expires_at < now)
    )
    try:
        session.execute(
            insert(u).values(client_id=client_id, jti=verified.jti, expires_at=verified.jti_expires_at)
        )
    except IntegrityError as err:
        # The transaction is now unusable; raising makes the caller roll it back.
        raise _invalid_client("replayed_jti", "このクライアントアサーションは使用済みです（jti の再利用）。") from err


def authenticate_client(
    session: Session,
    tables: OAuthTables,
    cipher: FieldCipher,
    *,
    form: Mapping[str, str],
    audience: str,
    now: datetime,
) -> ClientPrincipal:
    """Authenticate a ``client_secret_jwt`` assertion and spend its jti."""
    now = _aware(now)
    try:
        verified = _verify_assertion(session, tables, cipher, form, audience, now)
        _consume_jti(session, tables, verified, now)
    except OAuthError as exc:
        _log_refusal(exc)
        raise
    return verified.client


def _log_refusal(exc: OAuthError, client_id: str | None = None) -> None:
    log.info("oauth_refused", error=exc.error, reason=exc.reason, client_id=client_id)


# --- token endpoint -------------------------------------------------------------------


@dataclass(frozen=True)
class TokenResponse:
    """RFC 6749 §5.1 successful response (never a refresh_token)."""

    access_token: str
    expires_in: int
    scope: str
    token_type: str = "Bearer"

    def to_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "scope": self.scope,
        }

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        return f"TokenResponse(access_token='***', expires_in={self.expires_in}, scope={self.scope!r})"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _granted_scopes(requested: str | None, client: ClientPrincipal) -> list[str]:
    if requested is None:
        raise OAuthError(
            400, "invalid_scope", "パラメータ scope を指定してください（例: tax01:fukuhon:register）。",
            reason="missing_scope",
        )
    try:
        scopes = [str(s) for s in parse_scopes(requested)]
    except ValueError as err:
        raise OAuthError(400, "invalid_scope", str(err), reason="malformed_scope") from err
    if not scopes:
        raise OAuthError(400, "invalid_scope", "パラメータ scope を指定してください。", reason="missing_scope")
    denied = [s for s in scopes if s not in client.scopes]
    if denied:
        raise OAuthError(
            400,
            "invalid_scope",
            f"スコープ「{_shown(' '.join(denied), 200)}」はこのクライアントに許可されていません。",
            reason="scope_not_allowed",
        )
    return scopes


def issue_token(
    session: Session,
    tables: OAuthTables,
    cipher: FieldCipher,
    *,
    form: Mapping[str, str],
    token_endpoint: str,
    now: datetime,
    lifetime_s: int = DEFAULT_TOKEN_LIFETIME_S,
) -> TokenResponse:
    """The token endpoint (RFC 6749 §4.4.2) for ``client_secret_jwt`` clients."""
    now = _aware(now)
    if not 0 < lifetime_s <= MAX_TOKEN_LIFETIME_S:
        raise ValueError(f"lifetime_s must be within 1..{MAX_TOKEN_LIFETIME_S}")
    client_id: str | None = None
    try:
        grant_type = _field(form, "grant_type")
        if grant_type is None:
            raise _invalid_request("パラメータ grant_type を指定してください。", "missing_grant_type")
        if grant_type != GRANT_TYPE:
            raise OAuthError(
                400,
                "unsupported_grant_type",
                f"grant_type は {GRANT_TYPE} のみ使用できます（リフレッシュトークンは発行しません）。",
                reason="unsupported_grant_type",
            )
        verified = _verify_assertion(session, tables, cipher, form, token_endpoint, now)
        client_id = verified.client.client_id
        scopes = _granted_scopes(_field(form, "scope"), verified.client)
        _consume_jti(session, tables, verified, now)
    except OAuthError as exc:
        _log_refusal(exc, client_id)
        raise

    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.execute(
        insert(tables.tokens).values(
            id=hash_token(token),
            client_id=client_id,
            scopes=scopes,
            issued_at=now,
            expires_at=now + timedelta(seconds=lifetime_s),
            revoked_at=None,
        )
    )
    scope = " ".join(scopes)
    log.info("oauth_token_issued", client_id=client_id, scope=scope, expires_in=lifetime_s)
    return TokenResponse(access_token=token, expires_in=lifetime_s, scope=scope)


# --- using tokens ---------------------------------------------------------------------


def _live_token(session: Session, tables: OAuthTables, token: str, now: datetime) -> RowMapping | None:
    """The token's row if it is known, unrevoked, unexpired and its client active."""
    if not token or len(token) > 512:
        return None
    t, c = tables.tokens, tables.clients
    row = session.execute(
        select(t, c.c.system_id, c.c.active)
        .join(c, c.c.client_id == t.c.client_id)
        .where(t.c.id == hash_token(token))
    ).mappings().first()
    if row is None or row["revoked_at"] is not None or row["expires_at"] <= now or not row["active"]:
        return None
    return row


def introspect(session: Session, tables: OAuthTables, token: str, now: datetime) -> dict[str, Any]:
    """RFC 7662 §2.2: the token's metadata, or only ``{"active": False}``."""
    row = _live_token(session, tables, token, _aware(now))
    if row is None:
        return {"active": False}
    return {
        "active": True,
        "client_id": row["client_id"],
        "scope": " ".join(row["scopes"]),
        "exp": int(row["expires_at"].timestamp()),
        "iat": int(row["issued_at"].timestamp()),
        "sub": row["client_id"],
    }


def client_of_token(session: Session, tables: OAuthTables, token: str, now: datetime) -> ClientPrincipal | None:
    """The business system holding a live access token (any scope), or None: for a route
    that checks a scope per item of the request (an inquiry file's records, each for its
    affair) after reading it."""
    row = _live_token(session, tables, token, _aware(now))
    if row is None:
        return None
    return ClientPrincipal(
        client_id=str(row["client_id"]), system_id=str(row["system_id"]), scopes=tuple(row["scopes"])
    )


def _bearer_token(authorization_header: str | None) -> str:
    if authorization_header is None or not authorization_header.strip():
        raise _invalid_token("missing_token", "アクセストークンがありません。Authorization: Bearer ヘッダーで送ってください。")
    scheme, _, credentials = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise _invalid_token("missing_token", "アクセストークンがありません。Authorization: Bearer ヘッダーで送ってください。")
    credentials = credentials.strip(" ")
    if not credentials or len(credentials) > 512 or _BEARER_RE.fullmatch(credentials) is None:
        raise OAuthError(
            400, "invalid_request", "Authorization ヘッダーの形式が正しくありません。", reason="malformed_header",
            challenge=True,
        )
    return credentials


def authenticate_bearer(
    session: Session,
    tables: OAuthTables,
    authorization_header: str | None,
    required_scope: str,
    now: datetime,
) -> ClientPrincipal:
    """Resource-server check of ``Authorization: Bearer …`` (RFC 6750) for one scope."""
    scope = str(parse_scope(required_scope))  # a malformed required scope is a bug: ValueError
    try:
        token = _bearer_token(authorization_header)
        row = _live_token(session, tables, token, _aware(now))
        if row is None:
            raise _invalid_token(
                "inactive_token", "アクセストークンが無効です（期限切れ・失効・不明）。トークンを取得し直してください。"
            )
        if scope not in row["scopes"]:
            raise OAuthError(
                403,
                "insufficient_scope",
                f"この操作にはスコープ「{scope}」が必要です。",
                reason="insufficient_scope",
                scope=scope,
                challenge=True,
            )
    except OAuthError as exc:
        _log_refusal(exc)
        raise
    return ClientPrincipal(
        client_id=str(row["client_id"]), system_id=str(row["system_id"]), scopes=tuple(row["scopes"])
    )


def purge_expired(
    session: Session, tables: OAuthTables, now: datetime, *, keep_tokens: timedelta = timedelta(days=1)
) -> tuple[int, int]:
    """Delete spent jtis past their expiry and tokens expired more than ``keep_tokens`` ago."""
    now = _aware(now)
    jtis = session.execute(delete(tables.used_jtis).where(tables.used_jtis.c.expires_at < now))
    tokens = session.execute(delete(tables.tokens).where(tables.tokens.c.expires_at < now - keep_tokens))
    return int(getattr(jtis, "rowcount", 0) or 0), int(getattr(tokens, "rowcount", 0) or 0)


# --- HTTP -----------------------------------------------------------------------------

TOKEN_ENDPOINT_DESCRIPTION = (
    "クライアント認証は client_secret_jwt（RFC 7523）です。クライアントアサーションは"
    "クライアントシークレットで署名した HS256 の JWT で、iss と sub にクライアントID、"
    "aud にこのトークンエンドポイントのURL、iat、exp、jti（1回限り）を指定します。"
    f"exp は iat から{MAX_ASSERTION_LIFETIME_S}秒（{MAX_ASSERTION_LIFETIME_S // 60}分）以内に"
    f"してください（時刻のずれは{CLOCK_SKEW_S}秒まで許容）。ライブラリの既定がこれより長い場合"
    "（例: authlib の ClientSecretJWT は3600秒）は、有効期間を指定してください。"
    f"発行するアクセストークンの有効期間は既定で{DEFAULT_TOKEN_LIFETIME_S}秒、"
    "リフレッシュトークンは発行しません。"
)

_FORM_SCHEMA = {
    "token": {
        "type": "object",
        "required": ["grant_type", "scope", "client_assertion_type", "client_assertion"],
        "properties": {
            "grant_type": {"type": "string", "enum": [GRANT_TYPE]},
            "scope": {"type": "string", "example": "tax01:fukuhon:register"},
            "client_assertion_type": {"type": "string", "enum": [CLIENT_ASSERTION_TYPE]},
            "client_assertion": {
                "type": "string",
                "description": f"HS256 JWT（client_secret_jwt）。exp は iat から{MAX_ASSERTION_LIFETIME_S}秒以内",
            },
        },
    },
    "introspect": {
        "type": "object",
        "required": ["token", "client_assertion_type", "client_assertion"],
        "properties": {
            "token": {"type": "string"},
            "token_type_hint": {"type": "string"},
            "client_assertion_type": {"type": "string", "enum": [CLIENT_ASSERTION_TYPE]},
            "client_assertion": {"type": "string", "description": "HS256 JWT（client_secret_jwt）"},
        },
    },
}


def _openapi(kind: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": _FORM_SCHEMA[kind]}},
        }
    }


async def _read_form(request: Request) -> dict[str, str]:
    """A urlencoded body, each parameter at most once (RFC 6749 §3.2), no Authorization."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise _invalid_request(
            "Content-Type は application/x-www-form-urlencoded を指定してください。", "bad_content_type"
        )
    if request.headers.get("authorization") is not None:
        raise _invalid_request(
            "Authorization ヘッダーによるクライアント認証には対応していません。client_secret_jwt を使用してください。",
            "unsupported_auth_method",
        )
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _invalid_request("要求が大きすぎます。", "body_too_large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=32)
    except (UnicodeDecodeError, ValueError) as err:
        raise _invalid_request("要求本文の形式が正しくありません。", "malformed_body") from err
    form: dict[str, str] = {}
    for name, value in pairs:
        if value == "":
            continue
        if name in form:
            raise _invalid_request(f"パラメータ {_shown(name, 40)} が重複しています。", "duplicate_parameter")
        form[name] = value
    return form


def oauth_router(
    get_session: Callable[[], AbstractContextManager[Session]],
    tables: OAuthTables,
    cipher_getter: Callable[[], FieldCipher],
    token_endpoint_url: Callable[[Request], str],
    *,
    clock: Callable[[], datetime] = utcnow,
    lifetime_s: int = DEFAULT_TOKEN_LIFETIME_S,
) -> APIRouter:
    """``POST /oauth/token`` and ``POST /oauth/introspect``.

    ``get_session`` must commit on success and roll back on an exception (as
    :func:`renkei.core.db.transaction` does). Client assertions for both endpoints carry
    ``aud`` = the token endpoint URL, i.e. the authorization server's identity.
    """
    router = APIRouter(tags=["OAuth 2.0（庁内データ連携）"])

    def _token(form: dict[str, str], endpoint: str) -> TokenResponse:
        with get_session() as session:
            return issue_token(
                session, tables, cipher_getter(), form=form, token_endpoint=endpoint, now=clock(),
                lifetime_s=lifetime_s,
            )

    def _introspect(form: dict[str, str], endpoint: str) -> dict[str, Any]:
        with get_session() as session:
            now = clock()
            authenticate_client(session, tables, cipher_getter(), form=form, audience=endpoint, now=now)
            token = _field(form, "token")
            if token is None:
                raise _invalid_request("パラメータ token を指定してください。", "missing_token")
            return introspect(session, tables, token, now)

    @router.post(
        "/oauth/token",
        summary="アクセストークンの発行（Client Credentials Grant, client_secret_jwt）",
        description=TOKEN_ENDPOINT_DESCRIPTION,
        openapi_extra=_openapi("token"),
    )
    async def token_endpoint(request: Request) -> Response:
        try:
            form = await _read_form(request)
            result = await run_in_threadpool(_token, form, token_endpoint_url(request))
        except OAuthError as exc:
            return oauth_error_response(exc)
        return JSONResponse(result.to_dict(), headers=_NO_STORE)

    @router.post(
        "/oauth/introspect",
        summary="アクセストークンのイントロスペクション（RFC 7662）",
        openapi_extra=_openapi("introspect"),
    )
    async def introspect_endpoint(request: Request) -> Response:
        try:
            form = await _read_form(request)
            result = await run_in_threadpool(_introspect, form, token_endpoint_url(request))
        except OAuthError as exc:
            return oauth_error_response(exc)
        return JSONResponse(result, headers=_NO_STORE)

    return router
