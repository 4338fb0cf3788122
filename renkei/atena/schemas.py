"""Wire shapes of atena's API for business systems and staff terminals."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ResidentsIn(BaseModel):
    persons: list[dict[str, Any]] = Field(description="住民記録（個人番号、基本4情報、業務宛名番号）", max_length=10_000)


class ResidentsOut(BaseModel):
    atena_nos: list[str]


class AcquireIn(BaseModel):
    atena_nos: list[str] | None = Field(default=None, max_length=10_000)
    all_pending: bool = False


class AcquireOut(BaseModel):
    requested: int
    relayed: int
    problems: dict[str, int]


class StatusIn(BaseModel):
    atena_nos: list[str] = Field(max_length=10_000)


class StatusOut(BaseModel):
    total: int
    bound: int


class FukuhonIn(BaseModel):
    system: str = Field(min_length=1, max_length=40, description="業務システムID")
    records: list[dict[str, Any]] = Field(max_length=10_000)


class FukuhonOut(BaseModel):
    registered: int


class InquiryIn(BaseModel):
    system: str = Field(min_length=1, max_length=40)
    business_atena_no: str = Field(min_length=1, max_length=32)
    procedure_code: str = Field(min_length=1, max_length=32)
    info_kind_code: str = Field(min_length=1, max_length=32)
    provider_org: str = Field(min_length=1, max_length=32)
    as_of: str = Field(min_length=1, max_length=32, description="基準日（和暦または西暦: 令和7年4月1日、R7.4.1、2025-04-01）")


class InquiryOut(BaseModel):
    serial: str
    status: str
    status_label: str
    values: dict[str, str] | None = None
    edition: str | None = None
    record_key: str | None = None
    as_of: str
    as_of_wareki: str


class SessionIn(BaseModel):
    staff_id: str = Field(min_length=1, max_length=64, description="職員ID")
    password: str = Field(min_length=1, max_length=1024, description="パスワード")
    totp: str | None = Field(default=None, max_length=16, description="ワンタイムパスワード（6桁）")


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


class ApiTokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="用途（例: 夜間照会バッチ）")
    scopes: list[str] = Field(min_length=1, max_length=50, description="職員が持つ権限のうち、このトークンに許すもの")
    expires_in_days: int = Field(default=30, ge=1, le=90)


class ApiTokenOut(BaseModel):
    id: str
    token: str = Field(description="この応答でのみ表示されます。Authorization: Bearer で送ってください。")
    scopes: list[str]
    expires_at: datetime
