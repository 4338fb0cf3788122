"""Identifier validation and generation: 個人番号, 住民票コード, 宛名番号 and the catalogue codes.

Check-digit rules and where they come from (see /work/shared/REFERENCE.md):

- 個人番号: 総務省令 平成26年第85号 第5条. [known]
- 住民票コード: modulus 11, weights 2–7 from the right. [ours: the real formula is in a
  告示 we have not seen]
- 統合宛名番号 / 業務宛名番号: 14-digit serial + modulus 11, weights 2–7 cycling from the
  right, remainder 0 or 1 → 0. [ours, modelled on the 住民記録 宛名番号 rule]
- 地方公共団体コード: weights 6,5,4,3,2, 11 − (sum mod 11), 10 → 0, 11 → 1. [known]
- 機関コード and the JM/JT/TM codes: format only. [known]

Only ASCII digits count as digits. Callers that want to accept full-width input apply
NFKC themselves; doing it here would hide input mistakes from the staff who made them.

Problem messages never repeat the input, because the input may be an individual number
and messages end up in logs and on screens.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "IdKind",
    "IdProblem",
    "InvalidId",
    "atena_check_digit",
    "check",
    "generate_individual_number",
    "generate_resident_code",
    "individual_number_check_digit",
    "lg_code_check_digit",
    "make_atena_no",
    "make_individual_number",
    "make_lg_code",
    "make_resident_code",
    "mask_individual_number",
    "resident_code_check_digit",
    "validate",
]


class IdKind(StrEnum):
    """The kinds of identifier this module knows."""

    INDIVIDUAL_NUMBER = "individual-number"
    RESIDENT_CODE = "resident-code"
    # Covers both the 統合宛名番号 and the business systems' 宛名番号: same shape, same rule.
    ATENA_NO = "atena-no"
    LG_CODE = "lg-code"
    ORG_CODE = "org-code"
    AFFAIR_CODE = "affair-code"
    PROCEDURE_CODE = "procedure-code"
    INFO_KIND_CODE = "info-kind-code"


@dataclass(frozen=True, slots=True)
class IdProblem:
    """Why a value is not a valid identifier: a stable machine code and a Japanese message."""

    code: str
    message: str


class InvalidId(ValueError):
    """Raised by `validate` and the `make_*` helpers; `str(e)` is the Japanese message."""

    def __init__(self, kind: IdKind, problem: IdProblem) -> None:
        super().__init__(problem.message)
        self.kind = kind
        self.problem = problem

    def __reduce__(self) -> tuple[type[InvalidId], tuple[IdKind, IdProblem]]:
        # The default exception pickling replays `args` (just the message) into __init__,
        # which would fail; keep the exception usable across processes.
        return (InvalidId, (self.kind, self.problem))


# Stable problem codes.
NOT_DIGITS: Final = "not_digits"
WRONG_LENGTH: Final = "wrong_length"
BAD_CHECK_DIGIT: Final = "bad_check_digit"
BAD_PREFIX: Final = "bad_prefix"
ZERO_SERIAL: Final = "zero_serial"
OUT_OF_RANGE: Final = "out_of_range"

_ATENA_SERIAL_MAX: Final = 10**14 - 1


# --- check-digit arithmetic -------------------------------------------------------------


def _is_ascii_digits(s: str) -> bool:
    # str.isdigit alone accepts "１", "²", "٣"…; isascii narrows it to 0-9.
    return s.isascii() and s.isdigit()


def _mod11_to_check(r: int) -> int:
    # Shared by 個人番号, 住民票コード and 宛名番号: remainders 0 and 1 both give 0, since
    # 11 − 1 = 10 is not a digit.
    return 0 if r <= 1 else 11 - r


def _individual_number_cd(first11: str) -> int:
    # Written as the ordinance states it: Pn is the n-th digit from the right, Qn its weight.
    total = 0
    for n in range(1, 12):
        p = int(first11[-n])
        q = n + 1 if n <= 6 else n - 5
        total += p * q
    return _mod11_to_check(total % 11)


_CYCLE_WEIGHTS = (2, 3, 4, 5, 6, 7) * 4  # enough for the longest body (14 digits)


def _cycle_2_to_7_cd(body: str) -> int:
    # Weights 2,3,4,5,6,7,2,3,… from the rightmost digit of the body.
    total = sum(int(d) * w for d, w in zip(reversed(body), _CYCLE_WEIGHTS, strict=False))
    return _mod11_to_check(total % 11)


def _lg_code_cd(first5: str) -> int:
    s = sum(int(d) * w for d, w in zip(first5, (6, 5, 4, 3, 2), strict=True)) % 11
    # 11 − s, then 10 → 0 and 11 → 1.
    return {0: 1, 1: 0}.get(s, 11 - s)


# --- per-kind format --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Spec:
    label: str
    prefix: str  # "" for purely numeric identifiers
    digits: int  # number of digits after the prefix, check digit included
    check_digit: Callable[[str], int] | None  # body (all digits but the last) → check digit

    @property
    def length(self) -> int:
        return len(self.prefix) + self.digits

    @property
    def shape(self) -> str:
        if self.prefix:
            return f"「{self.prefix}」と{self.digits}桁の数字（計{self.length}文字）"
        return f"{self.digits}桁の数字"


_SPECS: Final[dict[IdKind, _Spec]] = {
    IdKind.INDIVIDUAL_NUMBER: _Spec("個人番号", "", 12, _individual_number_cd),
    IdKind.RESIDENT_CODE: _Spec("住民票コード", "", 11, _cycle_2_to_7_cd),
    IdKind.ATENA_NO: _Spec("統合宛名番号", "", 15, _cycle_2_to_7_cd),
    IdKind.LG_CODE: _Spec("地方公共団体コード", "", 6, _lg_code_cd),
    IdKind.ORG_CODE: _Spec("機関コード", "", 16, None),
    IdKind.AFFAIR_CODE: _Spec("事務コード", "JM", 14, None),
    IdKind.PROCEDURE_CODE: _Spec("事務手続コード", "JT", 14, None),
    IdKind.INFO_KIND_CODE: _Spec("特定個人情報名コード", "TM", 14, None),
}

_HYPHENS: Final = frozenset("-‐‑‒–—―−－ーｰ﹣")


def _describe(ch: str) -> str | None:
    """Name the kind of an unexpected character, never the character itself."""
    if "０" <= ch <= "９":
        return "全角数字"
    if unicodedata.digit(ch, None) is not None:
        return "半角以外の数字"
    if ch == "\u3000":
        return "全角空白"
    if ch.isspace():
        return "空白"
    if ch in _HYPHENS:
        return "ハイフン"
    if ch.isascii() and ch.isalpha():
        return "英字"
    if unicodedata.category(ch).startswith("C"):
        return "表示できない文字"
    return None


def _not_digits(spec: _Spec, value: str, index: int) -> IdProblem:
    ch = value[index]
    where = f"{index + 1}文字目"
    if "０" <= ch <= "９":
        # The commonest slip (IME left in full-width mode), so say exactly what to do.
        return IdProblem(
            NOT_DIGITS,
            f"{spec.label}に全角数字が含まれています（{where}）。{spec.shape}を半角で入力してください。",
        )
    desc = _describe(ch)
    detail = f"{where}: {desc}" if desc else where
    return IdProblem(
        NOT_DIGITS,
        f"{spec.label}に数字以外の文字が含まれています（{detail}）。{spec.shape}で入力してください。",
    )


def _bad_prefix(spec: _Spec, head: str) -> IdProblem:
    if unicodedata.normalize("NFKC", head).upper() == spec.prefix:
        hint = f"先頭は半角英大文字の「{spec.prefix}」で入力してください。"
    elif len(head) == 2 and head.isascii() and head.isalpha() and head.isupper():
        # Codes are not personal data, and "JT where JM was expected" is the usual mix-up.
        hint = f"入力の先頭は「{head}」です。"
    else:
        hint = f"先頭が「{spec.prefix}」ではありません。"
    return IdProblem(BAD_PREFIX, f"{spec.label}は{spec.shape}で入力してください。{hint}")


def _wrong_length(spec: _Spec, value: str) -> IdProblem:
    if not value:
        return IdProblem(
            WRONG_LENGTH, f"{spec.label}が入力されていません。{spec.shape}で入力してください。"
        )
    unit = "文字" if spec.prefix else "桁"
    return IdProblem(
        WRONG_LENGTH,
        f"{spec.label}は{spec.shape}で入力してください（入力は{len(value)}{unit}）。",
    )


def check(kind: IdKind, value: str) -> IdProblem | None:
    """Return the problem with `value` as a `kind`, or None when it is valid."""
    kind = IdKind(kind)  # also accepts the plain string value, e.g. from config
    spec = _SPECS[kind]
    if not value:
        return _wrong_length(spec, value)
    prefix = spec.prefix
    if prefix:
        if len(value) < len(prefix) and prefix.startswith(value):
            return _wrong_length(spec, value)
        if value[: len(prefix)] != prefix:
            return _bad_prefix(spec, value[: len(prefix)])
    # Characters before length: "1234-5678-9012" is better answered with "hyphen" than
    # with "14 characters".
    if not _is_ascii_digits(value[len(prefix) :]):  # else all digits: no need to find the first other
        for i in range(len(prefix), len(value)):
            if not _is_ascii_digits(value[i]):
                return _not_digits(spec, value, i)
    if len(value) != spec.length:
        return _wrong_length(spec, value)
    if spec.check_digit is not None and spec.check_digit(value[:-1]) != int(value[-1]):
        # The expected digit is not shown: staff would "correct" the check digit instead of
        # finding the digit they actually mistyped.
        return IdProblem(
            BAD_CHECK_DIGIT,
            f"{spec.label}のチェックディジットが一致しません。入力内容に誤りがないか確認してください。",
        )
    if kind is IdKind.ATENA_NO and int(value[:-1]) == 0:
        # make_atena_no never issues serial 0, and a zero-filled field is how batch files
        # write an empty 宛名番号; it must not pass as a person.
        return IdProblem(
            ZERO_SERIAL,
            f"{spec.label}の連番部分がすべて0です。空欄を0で埋めた値ではないか確認してください。",
        )
    return None


def validate(kind: IdKind, value: str) -> str:
    """Return `value` unchanged if valid, else raise `InvalidId`."""
    problem = check(kind, value)
    if problem is not None:
        raise InvalidId(IdKind(kind), problem)
    return value


# --- construction -----------------------------------------------------------------------


def _require_body(kind: IdKind, part: str, body: str, n: int) -> None:
    """Reject a malformed body given to a check-digit helper (a programming error)."""
    label = _SPECS[kind].label
    if not _is_ascii_digits(body):
        problem = IdProblem(NOT_DIGITS, f"{label}の{part}は{n}桁の半角数字で指定してください。")
    elif len(body) != n:
        problem = IdProblem(
            WRONG_LENGTH,
            f"{label}の{part}は{n}桁の半角数字で指定してください（指定は{len(body)}桁）。",
        )
    else:
        return
    raise InvalidId(kind, problem)


def individual_number_check_digit(first11: str) -> int:
    """Check digit of a 個人番号 from its first 11 digits."""
    _require_body(IdKind.INDIVIDUAL_NUMBER, "先頭11桁", first11, 11)
    return _individual_number_cd(first11)


def make_individual_number(first11: str) -> str:
    """The 12-digit 個人番号 with these first 11 digits."""
    return first11 + str(individual_number_check_digit(first11))


def resident_code_check_digit(first10: str) -> int:
    """Check digit of a 住民票コード from its first 10 digits."""
    _require_body(IdKind.RESIDENT_CODE, "先頭10桁", first10, 10)
    return _cycle_2_to_7_cd(first10)


def make_resident_code(first10: str) -> str:
    """The 11-digit 住民票コード with these first 10 digits."""
    return first10 + str(resident_code_check_digit(first10))


def atena_check_digit(serial14: str) -> int:
    """Check digit of a 統合宛名番号 / 宛名番号 from its 14-digit zero-padded serial."""
    _require_body(IdKind.ATENA_NO, "連番", serial14, 14)
    return _cycle_2_to_7_cd(serial14)


def make_atena_no(serial: int) -> str:
    """The 15-digit 宛名番号 for serial 1 … 99999999999999."""
    if isinstance(serial, bool) or not isinstance(serial, int):
        # bool is an int subclass; make_atena_no(True) is certainly a bug.
        raise TypeError(f"serial must be int, not {type(serial).__name__}")
    if not 1 <= serial <= _ATENA_SERIAL_MAX:
        raise InvalidId(
            IdKind.ATENA_NO,
            IdProblem(
                OUT_OF_RANGE,
                f"統合宛名番号の連番は1以上{_ATENA_SERIAL_MAX}以下で指定してください（指定は{serial}）。",
            ),
        )
    body = f"{serial:014d}"
    return body + str(_cycle_2_to_7_cd(body))


def lg_code_check_digit(first5: str) -> int:
    """Check digit of a 地方公共団体コード from its first 5 digits."""
    _require_body(IdKind.LG_CODE, "先頭5桁", first5, 5)
    return _lg_code_cd(first5)


def make_lg_code(first5: str) -> str:
    """The 6-digit 地方公共団体コード with these first 5 digits."""
    return first5 + str(lg_code_check_digit(first5))


def generate_individual_number(rng: random.Random) -> str:
    """A uniformly random valid 個人番号 (J-LIS simulator)."""
    # Each 11-digit prefix has exactly one valid completion, so a uniform prefix gives a
    # uniform valid number.
    return make_individual_number(f"{rng.randrange(10**11):011d}")


def generate_resident_code(rng: random.Random) -> str:
    """A uniformly random valid 住民票コード."""
    return make_resident_code(f"{rng.randrange(10**10):010d}")


def mask_individual_number(value: str) -> str:
    """Show only the last 4 digits: "********9018". Anything not 12 digits is fully masked."""
    if len(value) == 12 and _is_ascii_digits(value):
        return "*" * 8 + value[-4:]
    # Unknown shape: showing any part could show more than 4 digits of a number typed with
    # separators, so show nothing (and a fixed width, so the length leaks nothing either).
    return "*" * 12
