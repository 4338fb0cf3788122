"""The loaded catalogue: rule check and record validation.

A `Catalogue` is built by `load_catalogue()`; it holds no global state. The hub asks
`check_rule` for every inquiry; the intermediate server asks `validate_record` for every
provision copy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from renkei.catalogue.models import (
    ISSUE_BAD_DATE,
    ISSUE_BAD_YEAR,
    ISSUE_EDITION_NOT_IN_FORCE,
    ISSUE_NO_EDITION,
    ISSUE_NOT_IN_CODE_LIST,
    ISSUE_NOT_INTEGER,
    ISSUE_OUT_OF_RANGE,
    ISSUE_REQUIRED,
    ISSUE_TOO_LONG,
    ISSUE_UNKNOWN_EDITION,
    ISSUE_UNKNOWN_INFO_KIND,
    ISSUE_UNKNOWN_ITEM,
    RULE_NOT_FOUND,
    RULE_NOT_IN_FORCE,
    UNKNOWN_INFO_KIND,
    UNKNOWN_PROCEDURE,
    Affair,
    Edition,
    InfoKind,
    LayoutItem,
    Procedure,
    Rule,
    RuleDecision,
    ValidationIssue,
    format_period,
)

_INTEGER = re.compile(r"-?[0-9]+")
_YEAR = re.compile(r"[0-9]{4}")
_DATE_ISO = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DATE_BASIC = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")

_RuleKey = tuple[str, str, str, str]


@dataclass(frozen=True, eq=False)
class Catalogue:
    """Affairs, procedures, info kinds with layouts, and rules of one catalogue edition."""

    affairs: dict[str, Affair]
    procedures: dict[str, Procedure]
    info_kinds: dict[str, InfoKind]
    rules: tuple[Rule, ...]
    sample: bool
    edition_label: str
    organization_kinds: tuple[str, ...] = ()
    _by_key: dict[_RuleKey, tuple[Rule, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        index: dict[_RuleKey, list[Rule]] = {}
        for rule in self.rules:
            index.setdefault(rule.key, []).append(rule)
        frozen = {k: tuple(sorted(v, key=lambda r: r.valid_from)) for k, v in index.items()}
        object.__setattr__(self, "_by_key", frozen)

    # ------------------------------------------------------------------ look-ups

    def affair_of(self, procedure_code: str) -> Affair | None:
        proc = self.procedures.get(procedure_code)
        return None if proc is None else self.affairs.get(proc.affair_code)

    def rules_for(
        self, inquirer_kind: str, procedure_code: str, provider_kind: str, info_kind_code: str
    ) -> tuple[Rule, ...]:
        """Every rule (in force or not) for this combination, oldest first."""
        return self._by_key.get((inquirer_kind, procedure_code, provider_kind, info_kind_code), ())

    # ------------------------------------------------------------------ rule check

    def check_rule(
        self,
        inquirer_kind: str,
        procedure_code: str,
        provider_kind: str,
        info_kind_code: str,
        on: date,
    ) -> RuleDecision:
        """May an organization of `inquirer_kind` ask one of `provider_kind` for
        `info_kind_code`, for `procedure_code`, on `on`?

        Refusals, checked in this order: unknown_procedure, unknown_info_kind,
        rule_not_found (no rule for the combination at any time), rule_not_in_force
        (rules exist for the combination, none covers `on`; the message names their
        periods — e.g. a date before the start of linkage on 2017-07-18).
        """
        proc = self.procedures.get(procedure_code)
        if proc is None:
            return _refuse(
                UNKNOWN_PROCEDURE,
                f"事務手続コード「{procedure_code}」はカタログにありません。",
            )
        kind = self.info_kinds.get(info_kind_code)
        if kind is None:
            return _refuse(
                UNKNOWN_INFO_KIND,
                f"特定個人情報名コード「{info_kind_code}」はカタログにありません。",
            )
        what = (
            f"事務手続「{proc.code}（{proc.name}）」で、照会者「{inquirer_kind}」が"
            f"提供者「{provider_kind}」に特定個人情報「{kind.label}」を照会する規定"
        )
        candidates = self.rules_for(inquirer_kind, procedure_code, provider_kind, info_kind_code)
        if not candidates:
            return _refuse(
                RULE_NOT_FOUND,
                f"{what}は、別表第二及び利用特定個人情報提供命令のいずれにもありません。",
            )
        for rule in candidates:
            if rule.in_force_on(on):
                return RuleDecision(allowed=True, rule=rule, code=None, message=None)
        periods = "、".join(
            f"{format_period(r.valid_from, r.valid_to)}（{r.source}）" for r in candidates
        )
        return _refuse(
            RULE_NOT_IN_FORCE,
            f"{what}は、{on.isoformat()}には効力がありません。有効期間：{periods}",
        )

    # ------------------------------------------------------------------ record validation

    def validate_record(
        self,
        info_kind_code: str,
        values: Mapping[str, str],
        on: date,
        edition: str | None = None,
    ) -> list[ValidationIssue]:
        """Check one record (item code → value as on the wire) against the layout.

        The layout edition is the one in force on `on`, or, when `edition` (版番号) is
        given, that edition, which must also be in force on `on`. An empty string means
        "not set": allowed unless the item is required. Returns every issue found
        (empty list = valid). Messages never repeat the value.
        """
        kind = self.info_kinds.get(info_kind_code)
        if kind is None:
            return [
                ValidationIssue(
                    None,
                    ISSUE_UNKNOWN_INFO_KIND,
                    f"特定個人情報名コード「{info_kind_code}」はカタログにありません。",
                )
            ]
        chosen: Edition | None
        if edition is None:
            chosen = kind.edition_on(on)
            if chosen is None:
                return [
                    ValidationIssue(
                        None,
                        ISSUE_NO_EDITION,
                        f"特定個人情報「{kind.label}」には{on.isoformat()}に有効な版がありません。",
                    )
                ]
        else:
            chosen = next((e for e in kind.editions if e.edition == edition), None)
            if chosen is None:
                return [
                    ValidationIssue(
                        None,
                        ISSUE_UNKNOWN_EDITION,
                        f"特定個人情報「{kind.label}」に版番号「{edition}」はありません。",
                    )
                ]
            if not chosen.in_force_on(on):
                period = format_period(chosen.valid_from, chosen.valid_to)
                return [
                    ValidationIssue(
                        None,
                        ISSUE_EDITION_NOT_IN_FORCE,
                        f"特定個人情報「{kind.label}」の版番号「{edition}」の有効期間"
                        f"（{period}）は{on.isoformat()}を含みません。",
                    )
                ]

        issues: list[ValidationIssue] = []
        known = {it.code for it in chosen.items}
        for code in values:
            if code not in known:
                issues.append(
                    ValidationIssue(
                        code,
                        ISSUE_UNKNOWN_ITEM,
                        f"項目コード「{code}」は特定個人情報「{kind.label}」の"
                        f"版番号「{chosen.edition}」にありません。",
                    )
                )
        for item in chosen.items:
            issue = check_value(item, values.get(item.code, ""))
            if issue is not None:
                issues.append(issue)
        return issues


def _refuse(code: str, message: str) -> RuleDecision:
    return RuleDecision(allowed=False, rule=None, code=code, message=message)


def check_value(item: LayoutItem, value: str) -> ValidationIssue | None:
    """The first problem of one value for one layout item, or None."""
    label = item.label
    if value == "":
        if item.required:
            return ValidationIssue(item.code, ISSUE_REQUIRED, f"項目「{label}」は必須です。")
        return None
    if item.max_length is not None and len(value) > item.max_length:
        return ValidationIssue(
            item.code,
            ISSUE_TOO_LONG,
            f"項目「{label}」は{item.max_length}文字以内で指定してください。",
        )
    if item.type in ("integer", "year"):
        if not _INTEGER.fullmatch(value):
            return ValidationIssue(
                item.code, ISSUE_NOT_INTEGER, f"項目「{label}」は半角数字の整数で指定してください。"
            )
        if item.type == "year" and not _YEAR.fullmatch(value):
            return ValidationIssue(
                item.code, ISSUE_BAD_YEAR, f"項目「{label}」は西暦4桁の年で指定してください。"
            )
        number = int(value)
        if (item.minimum is not None and number < item.minimum) or (
            item.maximum is not None and number > item.maximum
        ):
            return ValidationIssue(
                item.code,
                ISSUE_OUT_OF_RANGE,
                f"項目「{label}」は{_range_text(item)}で指定してください。",
            )
        return None
    if item.type == "date":
        if parse_wire_date(value) is None:
            return ValidationIssue(
                item.code,
                ISSUE_BAD_DATE,
                f"項目「{label}」は実在する日付（YYYY-MM-DD又はYYYYMMDD）で指定してください。",
            )
        return None
    if item.type == "code":
        codes = item.codes or {}
        if value not in codes:
            listed = "、".join(f"{k}:{v}" for k, v in codes.items())
            return ValidationIssue(
                item.code,
                ISSUE_NOT_IN_CODE_LIST,
                f"項目「{label}」の値はコード表（{listed}）にありません。",
            )
        return None
    return None  # string: only max_length applies


def parse_wire_date(value: str) -> date | None:
    """A date as it comes on the wire: YYYY-MM-DD or YYYYMMDD (ASCII digits); None if not."""
    m = _DATE_ISO.fullmatch(value) or _DATE_BASIC.fullmatch(value)
    if m is None:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def _range_text(item: LayoutItem) -> str:
    if item.minimum is not None and item.maximum is not None:
        return f"{item.minimum}以上{item.maximum}以下"
    if item.minimum is not None:
        return f"{item.minimum}以上"
    return f"{item.maximum}以下"
