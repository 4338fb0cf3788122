"""Value types of the catalogue: affairs, procedures, info kinds, layouts, rules.

All are frozen and hashable; they are built by `renkei.catalogue.loader` from the data
files and never change afterwards.

Validity periods (of layout editions and of rules) include both ends: a period
`valid_from`..`valid_to` is in force on `valid_from` and on `valid_to`; `valid_to = None`
means no end.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final

# Layout item types.
ITEM_TYPES: Final = ("integer", "string", "date", "code", "year")

# RuleDecision.code values.
UNKNOWN_PROCEDURE: Final = "unknown_procedure"
UNKNOWN_INFO_KIND: Final = "unknown_info_kind"
RULE_NOT_FOUND: Final = "rule_not_found"
RULE_NOT_IN_FORCE: Final = "rule_not_in_force"

# ValidationIssue.code values.
ISSUE_UNKNOWN_INFO_KIND: Final = "unknown_info_kind"  # no such info kind
ISSUE_NO_EDITION: Final = "no_edition"  # no layout edition in force on the date
ISSUE_UNKNOWN_EDITION: Final = "unknown_edition"  # the named edition does not exist
ISSUE_EDITION_NOT_IN_FORCE: Final = "edition_not_in_force"  # named edition, not in force then
ISSUE_UNKNOWN_ITEM: Final = "unknown_item"  # a value for an item the edition lacks
ISSUE_REQUIRED: Final = "required"  # a required item is empty / missing
ISSUE_NOT_INTEGER: Final = "not_integer"  # integer/year item, not ASCII digits
ISSUE_BAD_YEAR: Final = "bad_year"  # year item, digits but not exactly four
ISSUE_OUT_OF_RANGE: Final = "out_of_range"  # below minimum / above maximum
ISSUE_TOO_LONG: Final = "too_long"  # more characters than max_length
ISSUE_NOT_IN_CODE_LIST: Final = "not_in_code_list"  # code item, value not in its code list
ISSUE_BAD_DATE: Final = "bad_date"  # date item, not YYYY-MM-DD / YYYYMMDD or no such day


class CatalogueError(Exception):
    """A catalogue data file is inconsistent.

    `file` names the data file (relative to the catalogue directory), `location` the line
    or entry when known; the message (Japanese) says all three and what is wrong.
    """

    def __init__(self, file: str, location: str | None, problem: str) -> None:
        where = f"{file} {location}" if location else file
        super().__init__(f"カタログのデータに誤りがあります: {where}: {problem}")
        self.file = file
        self.location = location
        self.problem = problem


class CodeList(Mapping[str, str]):
    """A read-only, hashable code list (code → label), in the order of the data file."""

    __slots__ = ("_pairs", "_index")

    def __init__(self, pairs: Mapping[str, str] | tuple[tuple[str, str], ...]) -> None:
        items = tuple(pairs.items()) if isinstance(pairs, Mapping) else tuple(pairs)
        self._pairs: tuple[tuple[str, str], ...] = items
        self._index: dict[str, str] = dict(items)

    def __getitem__(self, key: str) -> str:
        return self._index[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __hash__(self) -> int:
        return hash(self._pairs)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._index) == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"CodeList({self._index!r})"


@dataclass(frozen=True)
class Procedure:
    """事務手続."""

    code: str
    name: str
    affair_code: str


@dataclass(frozen=True)
class Affair:
    """事務; `number_use` marks a 番号利用事務."""

    code: str
    name: str
    number_use: bool
    procedures: tuple[Procedure, ...]


@dataclass(frozen=True)
class LayoutItem:
    """One item of a data-standard layout edition."""

    code: str
    name: str
    type: str  # one of ITEM_TYPES
    required: bool
    max_length: int | None
    minimum: int | None
    maximum: int | None
    codes: Mapping[str, str] | None  # a CodeList for type "code", else None
    sensitive: bool  # encrypted at rest

    @property
    def label(self) -> str:
        """「K001（課税年度）」 — how messages name the item."""
        return f"{self.code}（{self.name}）"


@dataclass(frozen=True)
class Edition:
    """A layout edition (データセット番号 + 版番号) and the period it is in force."""

    dataset: str
    edition: str
    valid_from: date
    valid_to: date | None
    items: tuple[LayoutItem, ...]

    def in_force_on(self, on: date) -> bool:
        return self.valid_from <= on and (self.valid_to is None or on <= self.valid_to)

    def item(self, code: str) -> LayoutItem | None:
        for it in self.items:
            if it.code == code:
                return it
        return None


@dataclass(frozen=True)
class InfoKind:
    """特定個人情報 (by its 特定個人情報名コード) with its layout editions, oldest first."""

    code: str
    name: str
    editions: tuple[Edition, ...]

    def edition_on(self, on: date) -> Edition | None:
        """The edition in force on `on` (editions never overlap), or None."""
        for ed in self.editions:
            if ed.in_force_on(on):
                return ed
        return None

    @property
    def label(self) -> str:
        return f"{self.code}（{self.name}）"


@dataclass(frozen=True)
class Rule:
    """情報照会の規定: inquirer kind may ask provider kind for an info kind, for a procedure."""

    id: str
    inquirer_kind: str
    procedure_code: str
    provider_kind: str
    info_kind_code: str
    valid_from: date
    valid_to: date | None
    source: str

    def in_force_on(self, on: date) -> bool:
        return self.valid_from <= on and (self.valid_to is None or on <= self.valid_to)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.inquirer_kind, self.procedure_code, self.provider_kind, self.info_kind_code)


@dataclass(frozen=True)
class RuleDecision:
    """The answer of Catalogue.check_rule.

    allowed → `rule` is the rule in force, `code` and `message` are None.
    refused → `code` is one of unknown_procedure, unknown_info_kind, rule_not_found,
    rule_not_in_force; `message` (Japanese) names what is missing; `rule` is None.
    """

    allowed: bool
    rule: Rule | None
    code: str | None
    message: str | None


@dataclass(frozen=True)
class ValidationIssue:
    """One problem of a record against its layout. Messages never contain the value."""

    item_code: str | None
    code: str
    message: str


def format_period(valid_from: date, valid_to: date | None) -> str:
    """「2017-07-18〜2024-05-26」, 「2024-05-27〜」 (open end)."""
    end = valid_to.isoformat() if valid_to is not None else ""
    return f"{valid_from.isoformat()}〜{end}"
