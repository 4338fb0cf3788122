"""Wire shapes of the staff routes every node mounts (renkei.staff.routes)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _encodable(value: str) -> str:
    # JSON may carry lone surrogates ("\ud800") and NUL: neither can be hashed or stored
    # (PostgreSQL text refuses NUL), and no ID, name or password needs a control character.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("使用できない文字が含まれています。") from None
    if _CONTROL.search(value):
        raise ValueError("制御文字は使用できません。")
    return value


Text = Annotated[str, AfterValidator(_encodable)]
StaffId = Annotated[
    str, Field(min_length=1, max_length=64, description="職員ID"), AfterValidator(_encodable)
]
RoleText = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_encodable)]


class SessionIn(BaseModel):
    staff_id: StaffId
    password: Annotated[Text, Field(min_length=1, max_length=1024, description="パスワード")]
    totp: (
        Annotated[Text, Field(max_length=16, description="ワンタイムパスワード（6桁）")] | None
    ) = None


class SessionOut(BaseModel):
    staff_id: str
    name: str
    roles: list[str]
    csrf_token: str = Field(description="状態を変更する要求のヘッダー X-CSRF-Token に付けて送る値")
    expires_at: datetime


class PrincipalOut(BaseModel):
    staff_id: str
    name: str
    roles: list[str]
    via: str = Field(description="session（ログイン）または api_token（APIトークン）")


class PasswordChangeIn(BaseModel):
    current_password: Annotated[
        Text, Field(min_length=1, max_length=1024, description="現在のパスワード")
    ]
    new_password: Annotated[
        Text, Field(min_length=1, max_length=1024, description="新しいパスワード")
    ]


class ApiTokenIn(BaseModel):
    name: Annotated[
        Text, Field(min_length=1, max_length=100, description="用途（例: 夜間照会バッチ）")
    ]
    scopes: list[RoleText] = Field(
        min_length=1, max_length=50, description="職員が持つ権限のうち、このトークンに許すもの"
    )
    expires_in_days: int = Field(default=30, ge=1, le=90)


class ApiTokenOut(BaseModel):
    id: str
    token: str = Field(
        description="この応答でのみ表示されます。Authorization: Bearer で送ってください。"
    )
    scopes: list[str]
    expires_at: datetime


class ApiTokenInfoOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiTokenListOut(BaseModel):
    tokens: list[ApiTokenInfoOut]


class StaffOut(BaseModel):
    staff_id: str
    name: str
    roles: list[str]
    active: bool
    locked: bool = Field(description="管理者がロックしている（ログインは誤ったパスワードと同じ応答で拒否）")
    locked_until: datetime | None = Field(
        description="ロックの終了日時（ロック中で null のときは管理者が解除するまで）"
    )
    throttled_until: datetime | None = Field(
        description="ログインの失敗が続いたため、この日時までログインを受け付けない（自動で解除）"
    )
    failed_count: int = Field(description="連続したログインの失敗回数")
    totp_enrolled: bool
    open_sessions: int
    created_at: datetime
    password_changed_at: datetime


class StaffListOut(BaseModel):
    staff: list[StaffOut]


class StaffCreateIn(BaseModel):
    staff_id: StaffId
    name: Annotated[Text, Field(min_length=1, max_length=100, description="氏名")]
    roles: list[RoleText] = Field(
        default_factory=list,
        max_length=50,
        description="権限（例: 管理、監査、JM01000000074000:参照）",
    )
    password: Annotated[Text, Field(min_length=1, max_length=1024)] | None = Field(
        default=None, description="初期パスワード（省略すると生成して一度だけ返します）"
    )


class RoleRequestOut(BaseModel):
    id: int
    staff_id: str = Field(description="権限を変更する職員")
    roles: list[str] = Field(description="依頼された権限（全体）")
    previous_roles: list[str] = Field(description="依頼時の権限")
    added: list[str]
    removed: list[str]
    requested_by: str
    requested_at: datetime
    status: str = Field(description="pending（承認待ち）・applied・rejected・superseded")
    status_label: str
    decided_by: str | None
    decided_at: datetime | None


class RoleRequestListOut(BaseModel):
    requests: list[RoleRequestOut]


class EnrolmentOut(BaseModel):
    staff_id: str
    name: str
    roles: list[str] = Field(description="付与済みの権限（個人情報を扱う権限は承認後に付与）")
    pending_request: RoleRequestOut | None = Field(
        default=None, description="別の管理者の承認を待つ権限変更の依頼"
    )
    initial_password: str | None = Field(description="生成した初期パスワード（この応答でのみ表示）")
    totp_uri: str = Field(description="認証アプリに登録する otpauth URI（この応答でのみ表示）")
    totp_qr_svg: str = Field(description="同じ URI の QR コード（SVG）")


class TotpOut(BaseModel):
    staff_id: str
    totp_uri: str = Field(description="新しい otpauth URI（この応答でのみ表示）")
    totp_qr_svg: str


class RolesIn(BaseModel):
    roles: list[RoleText] = Field(max_length=50)


class RolesOut(BaseModel):
    staff_id: str
    roles: list[str] = Field(description="現在の権限（承認待ちの分は含まない）")
    status: str = Field(description="applied（適用済み）または pending（承認待ち）")
    request: RoleRequestOut | None = Field(
        default=None, description="別の管理者の承認を待つ依頼（個人情報を扱う権限を加えるとき）"
    )


class RevokedOut(BaseModel):
    staff_id: str
    revoked: int = Field(description="終了したセッションの数")


class StaffStateOut(BaseModel):
    staff_id: str
    active: bool


class AlertOut(BaseModel):
    id: int
    at: datetime
    rule: str
    subject_kind: str
    subject: str
    action: str
    detail: dict[str, Any]
    acknowledged_at: datetime | None
    acknowledged_by: str | None


class AlertListOut(BaseModel):
    alerts: list[AlertOut]


class VerifyOut(BaseModel):
    ok: bool
    entries: int
    checkpoints: int
    first_broken_seq: int | None
    problem: str | None
    message: str


class ExportIn(BaseModel):
    kind: Annotated[
        Text, Field(min_length=1, max_length=40, description="書き出しの種類（例: audit）")
    ]
    params: dict[Annotated[Text, Field(max_length=40)], Any] = Field(
        default_factory=dict,
        max_length=20,
        description='条件（例: {"from": "2026-04-01", "to": "2026-04-30"}）',
    )


class ExportOut(BaseModel):
    id: int
    kind: str
    params: dict[str, Any]
    status: str
    status_label: str
    estimated_rows: int
    needs_approval: bool
    requested_by: str
    requested_at: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    rows_written: int | None
    finished_at: datetime | None


class ExportListOut(BaseModel):
    exports: list[ExportOut]
