"""Wire shapes of atena's API for business systems and staff terminals.

The sign-in and API-token shapes are the kernel's (renkei.staff.schemas).
"""

from __future__ import annotations

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
    department: str | None = Field(
        default=None, min_length=1, max_length=20, pattern=r"^[!-~]([ -~]*[!-~])?$", description="照会者部署コード（半角20文字以内）"
    )
    user_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        pattern=r"^[!-~]([ -~]*[!-~])?$",
        description="照会者ユーザーID（半角20文字以内。職員の照会では省略時に職員ID）",
    )


class InquiryOut(BaseModel):
    serial: str
    status: str
    status_label: str
    values: dict[str, str] | None = None
    edition: str | None = None
    record_key: str | None = None
    as_of: str
    as_of_wareki: str


class ChangesIn(BaseModel):
    events: list[dict[str, Any]] = Field(
        description="住民異動（異動ID、異動事由、異動日、個人番号、基本4情報、世帯番号・続柄 …; docs/register-feed.md）",
        min_length=1,
        max_length=10_000,
    )


class ChangesOut(BaseModel):
    received: int = Field(description="受け付けた異動の数")
    applied: int = Field(description="新たに反映した異動の数")
    duplicates: int = Field(description="反映済みのため何もしなかった異動の数（同じ異動ID・同じ内容）")
    outcomes: dict[str, int] = Field(description="applied（現在の情報）・history（過去の異動として履歴へ）・no_change の数")
    events: dict[str, str] = Field(description="異動IDごとの結果（applied / history / no_change / duplicate）")
    acquisition: AcquireOut | None = Field(default=None, description="転入・出生の人の符号取得（依頼した場合）")
    acquisition_error: str | None = Field(
        default=None, description="符号取得を始められなかった理由のコード（異動は反映済み。符号取得は後で再実行できます）"
    )
