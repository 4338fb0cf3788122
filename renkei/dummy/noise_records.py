"""The records of the non-resident noise generator: who a person really is, and what a
business system wrote down about them. Re-exported by `renkei.dummy.noise`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol

__all__ = ["NonResidentRecord", "SourcePerson", "TruthRow"]


class SourcePerson(Protocol):
    """A true person: resident, former resident, 中野区 person or invented non-resident.

    Optional attributes read with getattr when present: ``previous_address`` and
    ``previous_postal_code`` (a mover's old address), ``alias_family_name`` and
    ``alias_family_kana`` (a foreigner's registered 通称).
    """

    @property
    def key(self) -> str: ...
    @property
    def family_name(self) -> str: ...  # kanji (or roman letters), exactly as registered
    @property
    def given_name(self) -> str: ...
    @property
    def family_kana(self) -> str: ...  # full-width katakana
    @property
    def given_kana(self) -> str: ...
    @property
    def sex(self) -> str: ...  # "1" male, "2" female
    @property
    def birth_date(self) -> date: ...
    @property
    def postal_code(self) -> str: ...  # 7 digits, no hyphen
    @property
    def address(self) -> str: ...  # 東京都新宿区西新宿二丁目8番1号 ○○ハイツ201
    @property
    def is_foreign(self) -> bool: ...
    @property
    def alpha_name(self) -> str | None: ...  # NGUYEN VAN AN, family name first


@dataclass(frozen=True, slots=True)
class NonResidentRecord:
    """One record in one business system's 住登外者 file, as entered (noise included).

    `birth_date` is what `birth_date_text` says, read without era-boundary checks
    (`renkei.dummy.noise_date.read_birth_date`); None only when the text is empty.
    `noise` lists the noise kinds applied, for analysis; it is not in the business file.
    """

    record_id: str
    system: str
    business_atena_no: str | None
    family_name: str
    given_name: str
    family_kana: str
    given_kana: str
    sex: str
    birth_date: date | None
    birth_date_text: str
    postal_code: str | None
    address: str
    noise: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TruthRow:
    """Ground truth: record `record_id` of `system` is the person `true_key`."""

    record_id: str
    system: str
    true_key: str
