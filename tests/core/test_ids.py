"""Tests for renkei.core.ids: known examples, messages, and check-digit properties.

The single-digit-substitution tests do not assume modulus 11 catches every typo. With
all weights in 2..7 and 11 prime, changing one body digit always changes the remainder,
but the remainder → check-digit map is not injective ({0, 1} → 0 for 個人番号, 住民票コード
and 宛名番号; {0, 10} → 1 for 地方公共団体コード). So a change is undetected exactly when
it moves the remainder within that pair; the tests compute this and assert it exactly.
"""

from __future__ import annotations

import pickle
import random
import string
from collections.abc import Callable

import jpmynumber
import jpmynumber.exceptions
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from renkei.core import ids
from renkei.core.ids import IdKind, IdProblem, InvalidId

# Other engineers run tests in the same tree at the same time; timing is not the property.
fast = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])

LABELS = {
    IdKind.INDIVIDUAL_NUMBER: "個人番号",
    IdKind.RESIDENT_CODE: "住民票コード",
    IdKind.ATENA_NO: "統合宛名番号",
    IdKind.LG_CODE: "地方公共団体コード",
    IdKind.ORG_CODE: "機関コード",
    IdKind.AFFAIR_CODE: "事務コード",
    IdKind.PROCEDURE_CODE: "事務手続コード",
    IdKind.INFO_KIND_CODE: "特定個人情報名コード",
}
PREFIXES = {IdKind.AFFAIR_CODE: "JM", IdKind.PROCEDURE_CODE: "JT", IdKind.INFO_KIND_CODE: "TM"}
KNOWN_CODES = {"not_digits", "wrong_length", "bad_check_digit", "bad_prefix", "zero_serial"}


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=string.digits, min_size=n, max_size=n)


# --- independent reference arithmetic, written from REFERENCE.md, not from ids.py ---------


def r_individual(first11: str) -> int:
    return (
        sum(int(d) * w for d, w in zip(first11, (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2), strict=True))
        % 11
    )


def r_cycle(body: str) -> int:
    weights = [2, 3, 4, 5, 6, 7] * 3
    return sum(int(d) * w for d, w in zip(reversed(body), weights, strict=False)) % 11


def s_lg(first5: str) -> int:
    return sum(int(d) * w for d, w in zip(first5, (6, 5, 4, 3, 2), strict=True)) % 11


# --- known examples -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["123456789018", "983205673214"])
def test_known_valid_individual_numbers(value: str) -> None:
    assert ids.check(IdKind.INDIVIDUAL_NUMBER, value) is None
    assert ids.validate(IdKind.INDIVIDUAL_NUMBER, value) == value
    assert ids.make_individual_number(value[:11]) == value
    assert ids.individual_number_check_digit(value[:11]) == int(value[-1])


def test_known_invalid_individual_number() -> None:
    problem = ids.check(IdKind.INDIVIDUAL_NUMBER, "123456789012")
    assert problem is not None and problem.code == "bad_check_digit"
    assert "チェックディジット" in problem.message


@pytest.mark.parametrize(
    ("value", "name"), [("131041", "新宿区"), ("131148", "中野区"), ("131016", "千代田区")]
)
def test_known_lg_codes(value: str, name: str) -> None:
    assert ids.check(IdKind.LG_CODE, value) is None, name
    assert ids.make_lg_code(value[:5]) == value


def test_lg_code_rejects_wrong_check_digit() -> None:
    for d in "023456789":
        assert ids.check(IdKind.LG_CODE, "13104" + d) is not None


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (IdKind.AFFAIR_CODE, "JM01000000121000"),
        (IdKind.PROCEDURE_CODE, "JT01010000000214"),
        (IdKind.PROCEDURE_CODE, "JT01010000000001"),
        (IdKind.INFO_KIND_CODE, "TM00000000000002"),
        (IdKind.INFO_KIND_CODE, "TM00000000000089"),
        (IdKind.ORG_CODE, "0000000000000001"),
    ],
)
def test_known_catalogue_codes(kind: IdKind, value: str) -> None:
    assert ids.check(kind, value) is None


def test_atena_examples() -> None:
    # Serial 1: only the rightmost digit (weight 2) is set, r = 2, check = 9.
    assert ids.make_atena_no(1) == "000000000000019"
    assert ids.atena_check_digit("00000000000001") == 9
    assert ids.check(IdKind.ATENA_NO, ids.make_atena_no(10**14 - 1)) is None
    zero = ids.check(IdKind.ATENA_NO, "000000000000000")
    assert zero is not None and zero.code == "zero_serial"


def test_resident_code_example() -> None:
    # Rightmost body digit has weight 2: 1·2 = 2 → check 9.
    assert ids.make_resident_code("0000000001") == "00000000019"
    assert ids.resident_code_check_digit("0000000001") == 9


def test_plain_string_kind_is_accepted() -> None:
    assert ids.check(IdKind("individual-number"), "123456789018") is None
    assert ids.check("individual-number", "123456789018") is None  # type: ignore[arg-type]


# --- messages and exceptions ---------------------------------------------------------------


def test_wrong_length_message_matches_house_style() -> None:
    problem = ids.check(IdKind.INDIVIDUAL_NUMBER, "12345678901")
    assert problem == IdProblem(
        "wrong_length", "個人番号は12桁の数字で入力してください（入力は11桁）。"
    )


@pytest.mark.parametrize(
    ("value", "code", "fragment"),
    [
        ("１２３４５６７８９０１８", "not_digits", "全角数字"),
        ("1234-5678-9018", "not_digits", "ハイフン"),
        ("1234 5678 9018", "not_digits", "空白"),
        ("123456789018\u3000", "not_digits", "全角空白"),
        ("12345678901a", "not_digits", "英字"),
        ("", "wrong_length", "入力されていません"),
        ("1234567890123", "wrong_length", "13桁"),
    ],
)
def test_individual_number_messages(value: str, code: str, fragment: str) -> None:
    problem = ids.check(IdKind.INDIVIDUAL_NUMBER, value)
    assert problem is not None
    assert problem.code == code
    assert fragment in problem.message
    assert problem.message.startswith("個人番号")


@pytest.mark.parametrize(
    ("kind", "value", "code"),
    [
        (IdKind.AFFAIR_CODE, "JT01010000000214", "bad_prefix"),
        (IdKind.AFFAIR_CODE, "jm01000000121000", "bad_prefix"),
        (IdKind.AFFAIR_CODE, "ＪＭ01000000121000", "bad_prefix"),
        (IdKind.AFFAIR_CODE, "J", "wrong_length"),
        (IdKind.AFFAIR_CODE, "JM0100000012100", "wrong_length"),
        (IdKind.AFFAIR_CODE, "JM0100000012100X", "not_digits"),
        (IdKind.PROCEDURE_CODE, "JM01000000121000", "bad_prefix"),
        (IdKind.INFO_KIND_CODE, "00000000000002", "bad_prefix"),
        (IdKind.ORG_CODE, "000000000000001", "wrong_length"),
        (IdKind.ORG_CODE, "00000000000000０1", "not_digits"),
        (IdKind.LG_CODE, "13104", "wrong_length"),
        (IdKind.RESIDENT_CODE, "0000000001", "wrong_length"),
    ],
)
def test_code_problems(kind: IdKind, value: str, code: str) -> None:
    problem = ids.check(kind, value)
    assert problem is not None and problem.code == code
    assert problem.message.startswith(LABELS[kind])


def test_bad_prefix_message_names_the_mix_up() -> None:
    problem = ids.check(IdKind.AFFAIR_CODE, "JT01010000000214")
    assert problem is not None
    assert "「JM」" in problem.message and "「JT」" in problem.message


def test_invalid_id_exception() -> None:
    with pytest.raises(InvalidId) as info:
        ids.validate(IdKind.INDIVIDUAL_NUMBER, "123456789012")
    exc = info.value
    assert isinstance(exc, ValueError)
    assert exc.kind is IdKind.INDIVIDUAL_NUMBER
    assert exc.problem.code == "bad_check_digit"
    assert str(exc) == exc.problem.message
    again = pickle.loads(pickle.dumps(exc))
    assert (again.kind, again.problem, str(again)) == (exc.kind, exc.problem, str(exc))


@pytest.mark.parametrize(
    ("func", "arg"),
    [
        (ids.individual_number_check_digit, "1234567890"),
        (ids.individual_number_check_digit, "１２３４５６７８９０１"),
        (ids.make_individual_number, "123456789012"),
        (ids.resident_code_check_digit, "123456789"),
        (ids.make_resident_code, "12345 67890"),
        (ids.atena_check_digit, "1"),
        (ids.lg_code_check_digit, "1310"),
        (ids.make_lg_code, "1310x"),
    ],
)
def test_make_helpers_reject_malformed_input(func: Callable[[str], object], arg: str) -> None:
    with pytest.raises(InvalidId):
        func(arg)


@pytest.mark.parametrize("serial", [0, -1, 10**14])
def test_make_atena_no_range(serial: int) -> None:
    with pytest.raises(InvalidId) as info:
        ids.make_atena_no(serial)
    assert info.value.problem.code == "out_of_range"


def test_make_atena_no_rejects_bool() -> None:
    with pytest.raises(TypeError):
        ids.make_atena_no(True)


# --- jpmynumber as an oracle for the 個人番号 rule ----------------------------------------


@fast
@given(digits(11))
def test_check_digit_matches_jpmynumber(first11: str) -> None:
    # validation=False: the oracle only computes; it reads the first 11 digits of the string.
    oracle = jpmynumber.IndividualNumber(first11 + "0", validation=False).true_check_digit
    assert ids.individual_number_check_digit(first11) == oracle


@fast
@given(digits(12))
def test_validity_matches_jpmynumber(value: str) -> None:
    try:
        jpmynumber.IndividualNumber(value)
        oracle_valid = True
    except jpmynumber.exceptions.JPMyNumberCheckDigitError:
        oracle_valid = False
    assert (ids.check(IdKind.INDIVIDUAL_NUMBER, value) is None) == oracle_valid


# --- every make_* output validates ----------------------------------------------------------


@fast
@given(digits(11), digits(10), st.integers(1, 10**14 - 1), digits(5))
def test_make_outputs_validate(first11: str, first10: str, serial: int, first5: str) -> None:
    assert ids.validate(IdKind.INDIVIDUAL_NUMBER, ids.make_individual_number(first11))
    assert ids.validate(IdKind.RESIDENT_CODE, ids.make_resident_code(first10))
    atena = ids.make_atena_no(serial)
    assert len(atena) == 15 and int(atena[:14]) == serial
    assert ids.validate(IdKind.ATENA_NO, atena)
    assert ids.validate(IdKind.LG_CODE, ids.make_lg_code(first5))


@fast
@given(digits(14), st.sampled_from(list(PREFIXES)))
def test_prefixed_codes(body: str, kind: IdKind) -> None:
    prefix = PREFIXES[kind]
    assert ids.check(kind, prefix + body) is None
    for other in set(PREFIXES.values()) - {prefix}:
        problem = ids.check(kind, other + body)
        assert problem is not None and problem.code == "bad_prefix"


# --- single-digit substitutions ---------------------------------------------------------------


def substitutions(value: str) -> list[tuple[int, str]]:
    return [
        (pos, value[:pos] + d + value[pos + 1 :])
        for pos in range(len(value))
        for d in string.digits
        if d != value[pos]
    ]


@fast
@given(digits(11))
def test_individual_number_single_digit_changes(first11: str) -> None:
    value = ids.make_individual_number(first11)
    for pos, changed in substitutions(value):
        undetected = pos < 11 and {r_individual(value[:11]), r_individual(changed[:11])} == {0, 1}
        assert (ids.check(IdKind.INDIVIDUAL_NUMBER, changed) is None) == undetected, (
            value,
            changed,
        )


@fast
@given(digits(10))
def test_resident_code_single_digit_changes(first10: str) -> None:
    value = ids.make_resident_code(first10)
    for pos, changed in substitutions(value):
        undetected = pos < 10 and {r_cycle(value[:10]), r_cycle(changed[:10])} == {0, 1}
        assert (ids.check(IdKind.RESIDENT_CODE, changed) is None) == undetected, (value, changed)


@fast
@given(st.integers(1, 10**14 - 1))
def test_atena_no_single_digit_changes(serial: int) -> None:
    value = ids.make_atena_no(serial)
    for pos, changed in substitutions(value):
        undetected = (
            pos < 14
            and {r_cycle(value[:14]), r_cycle(changed[:14])} == {0, 1}
            and int(changed[:14]) != 0  # serial 0 is refused on its own
        )
        assert (ids.check(IdKind.ATENA_NO, changed) is None) == undetected, (value, changed)


@fast
@given(digits(5))
def test_lg_code_single_digit_changes(first5: str) -> None:
    value = ids.make_lg_code(first5)
    for pos, changed in substitutions(value):
        undetected = pos < 5 and {s_lg(value[:5]), s_lg(changed[:5])} == {0, 10}
        assert (ids.check(IdKind.LG_CODE, changed) is None) == undetected, (value, changed)


def test_undetected_substitutions_exist() -> None:
    # The blind spots are real, so the properties above are not vacuous.
    pairs = [
        (IdKind.INDIVIDUAL_NUMBER, "000000000000", "000000000060"),  # r 0 → 1
        (IdKind.RESIDENT_CODE, "00000000000", "00000000060"),  # r 0 → 1
        (IdKind.ATENA_NO, "000000000000140", "400000000000140"),  # r 0 → 1
        (IdKind.LG_CODE, "131041", "131091"),  # s 0 → 10
    ]
    for kind, a, b in pairs:
        assert ids.check(kind, a) is None and ids.check(kind, b) is None
        assert sum(x != y for x, y in zip(a, b, strict=True)) == 1
    jpmynumber.IndividualNumber("000000000060")  # the oracle agrees it is valid


def test_lg_code_sweep() -> None:
    # A deterministic sweep alongside the random one: the only undetected single changes
    # are s 0 ↔ 10, and they do occur.
    undetected = 0
    for n in range(0, 10**5, 97):
        body = f"{n:05d}"
        value = ids.make_lg_code(body)
        for pos, changed in substitutions(value):
            if ids.check(IdKind.LG_CODE, changed) is None:
                undetected += 1
                assert pos < 5 and {s_lg(body), s_lg(changed[:5])} == {0, 10}
    assert undetected > 0


# --- robustness -------------------------------------------------------------------------------


@fast
@given(st.sampled_from(list(IdKind)), st.text())
def test_check_never_raises(kind: IdKind, value: str) -> None:
    problem = ids.check(kind, value)
    if problem is not None:
        assert problem.code in KNOWN_CODES
        assert problem.message.startswith(LABELS[kind])


@fast
@given(
    st.sampled_from(list(IdKind)),
    st.text(alphabet=string.digits + "０１９ 　-ー\tJMTa\x00٣²", max_size=20),
)
def test_check_never_raises_on_near_misses(kind: IdKind, value: str) -> None:
    problem = ids.check(kind, value)
    assert problem is None or problem.code in KNOWN_CODES


@fast
@given(st.sampled_from(list(IdKind)), st.text(alphabet=string.digits, min_size=5, max_size=40))
def test_messages_never_repeat_the_input(kind: IdKind, value: str) -> None:
    problem = ids.check(kind, value)
    if problem is not None:
        assert value not in problem.message


def test_empty_is_a_problem_for_every_kind() -> None:
    for kind in IdKind:
        problem = ids.check(kind, "")
        assert problem is not None and problem.code == "wrong_length"
        assert problem.message.startswith(LABELS[kind])


# --- generation and masking ---------------------------------------------------------------------


def test_generators_are_valid_reproducible_and_spread() -> None:
    rng = random.Random(20240601)
    numbers = [ids.generate_individual_number(rng) for _ in range(2000)]
    codes = [ids.generate_resident_code(rng) for _ in range(2000)]
    assert all(ids.check(IdKind.INDIVIDUAL_NUMBER, n) is None for n in numbers)
    assert all(ids.check(IdKind.RESIDENT_CODE, c) is None for c in codes)
    # Uniform over all prefixes, leading zeros included.
    assert {n[0] for n in numbers} == set(string.digits)
    assert {c[0] for c in codes} == set(string.digits)
    assert len(set(numbers)) == len(numbers)
    again = random.Random(20240601)
    assert [ids.generate_individual_number(again) for _ in range(5)] == numbers[:5]


def test_mask_examples() -> None:
    assert ids.mask_individual_number("123456789018") == "********9018"
    assert ids.mask_individual_number("1234-5678-9018") == "************"
    assert ids.mask_individual_number("") == "************"


@fast
@given(st.text())
def test_mask_never_shows_more_than_four_characters(value: str) -> None:
    masked = ids.mask_individual_number(value)
    assert len(masked) == 12
    assert len(masked.replace("*", "")) <= 4
