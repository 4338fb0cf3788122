"""Wire shapes of atena's API for business systems and staff terminals.

The sign-in and API-token shapes are the kernel's (renkei.staff.schemas).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ResidentsIn(BaseModel):
    persons: list[dict[str, Any]] = Field(description="住民記録（個人番号、基本4情報、業務宛名番号）", max_length=10_000)
    start_acquisition: bool = Field(
        default=True,
        description="新たに付番した人の符号取得を開始する（false: 一括移行などで、後から acquire-pseudonyms で取得する）",
    )


class NumberingResult(BaseModel):
    """One record's outcome, named by the caller's own numbers (never the 統合宛名番号)."""

    business_numbers: dict[str, str]
    outcome: str = Field(description="numbered（新規付番）| linked（既存の宛名に紐付け・更新）| unchanged（変更なし）")
    outcome_label: str


class AcquisitionStarted(BaseModel):
    """Pseudonym acquisition started for the newly numbered (機能ID 0320008)."""

    requested: int
    relayed: int
    problems: dict[str, int] = Field(default_factory=dict)
    deferred: str | None = Field(default=None, description="開始できなかった理由（後で符号取得を依頼してください）")


class ResidentsOut(BaseModel):
    results: list[NumberingResult]
    numbered: int
    linked: int
    unchanged: int
    acquisition: AcquisitionStarted


class AcquireIn(BaseModel):
    system: str | None = Field(default=None, min_length=1, max_length=40, description="業務システムID（省略時は住民記録）")
    business_atena_nos: list[str] | None = Field(default=None, max_length=10_000, description="業務宛名番号")
    all_pending: bool = False
    atena_nos: Any = Field(default=None, description="受け付けません（業務システムは団体内統合宛名番号を使いません）")


class AcquireOut(BaseModel):
    requested: int
    relayed: int
    problems: dict[str, int]


class StatusIn(BaseModel):
    system: str | None = Field(default=None, min_length=1, max_length=40, description="業務システムID（省略時は住民記録）")
    business_atena_nos: list[str] = Field(default_factory=list, max_length=10_000, description="業務宛名番号")
    all_persons: bool = Field(default=False, description="全員の件数だけを返す（番号は返さない）")
    atena_nos: Any = Field(default=None, description="受け付けません（業務システムは団体内統合宛名番号を使いません）")


class StatusOut(BaseModel):
    total: int
    bound: int
    bound_business_atena_nos: list[str] = Field(default_factory=list, description="符号取得済みの業務宛名番号")


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


class BasicFourIn(BaseModel):
    """基本4情報 (with the postal code and the 地方公共団体コード of the address)."""

    family_name: str = Field(max_length=100, description="氏")
    given_name: str = Field(max_length=100, description="名")
    family_kana: str = Field(max_length=100, description="氏（カナ）")
    given_kana: str = Field(max_length=100, description="名（カナ）")
    birth_date: str = Field(max_length=32, description="生年月日（YYYY-MM-DD）")
    sex: str = Field(max_length=1, description="性別（1 男、2 女、9 不明）")
    postal_code: str = Field(max_length=7)
    address: str = Field(max_length=300)
    lg_code: str = Field(max_length=6, description="住所の地方公共団体コード")


class NumberingIn(BasicFourIn):
    """団体内統合宛名番号付番依頼 (機能ID 0320001) of one person from a business system."""

    system: str = Field(min_length=1, max_length=40, description="業務システムID")
    business_atena_no: str = Field(max_length=32, description="業務システムの宛名番号")
    individual_number: str = Field(max_length=32, description="個人番号")


class NonResidentQueryIn(BasicFourIn):
    """住登外者宛名基本情報照会 (機能ID 0310007)."""

    system: str = Field(min_length=1, max_length=40, description="業務システムID")


class CandidateOut(BaseModel):
    """A candidate as a business system sees it: its own number if it has one, never the
    統合宛名番号."""

    ref: int = Field(description="候補の番号（登録時に choice で指定）")
    match: str
    match_label: str
    residence_label: str
    business_atena_no: str | None = Field(description="この業務システムの宛名番号（紐付いている場合）")
    family_name: str
    given_name: str
    family_kana: str
    given_kana: str
    birth_date: str
    sex: str
    address: str


class NonResidentCandidatesOut(BaseModel):
    candidates: list[CandidateOut]
    acknowledgement: str = Field(description="候補の確認票（登録時にそのまま送る）")


class NonResidentIn(NonResidentQueryIn):
    """住登外者宛名番号付番依頼 (機能ID 0310004), after the candidates were seen."""

    business_atena_no: str = Field(max_length=32, description="業務システムの宛名番号")
    acknowledgement: str = Field(max_length=128, description="候補の確認票（照会の応答のもの）")
    choice: str = Field(max_length=8, description="new（新規付番）または候補の番号")


class NonResidentOut(BaseModel):
    system: str
    business_atena_no: str
    outcome: str
    outcome_label: str
    candidates: int


class IndividualNumberSearchIn(BaseModel):
    """個人番号の照会（J-LIS 本人確認情報の検索）for a non-resident the caller holds."""

    system: str = Field(min_length=1, max_length=40, description="業務システムID")
    business_atena_no: str = Field(max_length=32, description="業務システムの宛名番号")
    affair_code: str = Field(max_length=16, description="事務コード（番号利用事務に限る）")


class IndividualNumberSearchOut(BaseModel):
    system: str
    business_atena_no: str
    status: str = Field(description="found | not_found | multiple | already_held | held_by_other")
    message: str
    individual_number: str | None = Field(default=None, description="個人番号（found のときだけ）")


class AddresseeOut(BaseModel):
    """One person found (the version of 基本4情報 that matched)."""

    atena_no: str
    residence: str = Field(description="resident（住民）| non_resident（住登外者）")
    current: bool = Field(description="現在の基本4情報で一致（false: 旧氏名・旧住所で一致）")
    family_name: str
    given_name: str
    family_kana: str
    given_kana: str
    birth_date: str
    birth_date_wareki: str
    sex: str
    address: str


class AddresseeSearchOut(BaseModel):
    total: int = Field(description="一致した人数（capped が true のときはこの数以上）")
    capped: bool
    page: int
    pages: int
    items: list[AddresseeOut]


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
