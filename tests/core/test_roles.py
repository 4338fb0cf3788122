"""Roles scoped to affairs: parsing, permission checks, number reveal, separation of duties."""

from __future__ import annotations

import pickle

import pytest

from renkei.staff.roles import (
    PermissionDenied,
    Role,
    RoleConflict,
    admin_with_data_roles,
    can_see_individual_number,
    check_separation,
    data_roles,
    has_role,
    may_read_audit,
    normalize_roles,
    parse_role,
    require,
)

CHILD = "JM01000000074000"  # 児童手当 (number-use)
TAX = "JM01000000016000"  # 地方税 (number-use)
OTHER = "JM99000000000001"  # not number-use in these tests
NUMBER_USE = {CHILD, TAX}


# --- parse_role -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scope", "operation"),
    [
        (f"{CHILD}:照会", CHILD, "照会"),
        (f"{CHILD}:副本登録", CHILD, "副本登録"),
        ("宛名:参照", "宛名", "参照"),
        ("宛名:更新", "宛名", "更新"),
        ("個人番号:表示", "個人番号", "表示"),
        ("管理", None, "管理"),
        ("監査", None, "監査"),
        ("管理:管理", None, "管理"),
        ("監査:監査", None, "監査"),
        ("監査:参照", "監査", "参照"),
        (" 宛名：参照 ", "宛名", "参照"),  # full-width colon, spaces: NFKC + strip
        ("ＪＭ０１０００００００７４０００:照会", CHILD, "照会"),  # full-width code
    ],
)
def test_parse_role_accepts(text: str, scope: str | None, operation: str) -> None:
    role = parse_role(text)
    assert role == Role(scope, operation)
    assert parse_role(str(role)) == role


def test_canonical_spelling() -> None:
    assert str(parse_role("管理:管理")) == "管理"
    assert str(parse_role(f"{CHILD}：照会")) == f"{CHILD}:照会"
    assert normalize_roles(["宛名:参照", "宛名：参照", "監査:監査"]) == ["宛名:参照", "監査"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "空"),
        ("   ", "空"),
        ("照会", "形式"),  # bare role other than 管理/監査
        ("宛名", "形式"),
        ("住民:参照", "範囲"),  # unknown named scope
        ("JM0100000007400:照会", "事務コード"),  # 13 digits
        ("JM010000000740000:照会", "事務コード"),  # 15 digits
        ("JT01010000074001:照会", "範囲"),  # procedure code, not affair
        ("JM0100000007400X:照会", "事務コード"),
        (f"{CHILD}:削除", "操作"),  # unknown operation
        (f"{CHILD}:", "操作"),
        (":照会", "範囲"),
        (f"{CHILD}:照会:更新", "複数"),
        ("宛名:" + "参照" * 40, "長すぎ"),
    ],
)
def test_parse_role_rejects_with_japanese_message(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_role(text)
    assert fragment in str(exc.value)


def test_a_single_string_is_not_a_role_list() -> None:
    with pytest.raises(ValueError):
        normalize_roles("宛名:参照")


# --- require ----------------------------------------------------------------------------


def test_require_passes_with_the_role() -> None:
    roles = [f"{CHILD}:照会", "宛名:参照"]
    require(roles, "照会", affair=CHILD)
    require(roles, f"{CHILD}:照会")
    require(roles, "宛名:参照")
    require(roles, "宛名：参照")  # same role, other spelling
    assert has_role(roles, "照会", affair=CHILD)


def test_require_refuses_another_affair() -> None:
    # A child-allowance clerk cannot query for the tax affair.
    with pytest.raises(PermissionDenied) as exc:
        require([f"{CHILD}:照会"], "照会", affair=TAX)
    assert exc.value.code == "role_required"
    assert exc.value.status == 403
    assert exc.value.message_ja == f"この操作には権限「{TAX}:照会」が必要です。"
    assert exc.value.needed == f"{TAX}:照会"


def test_no_role_implies_another() -> None:
    for held, needed in [
        (["宛名:更新"], "宛名:参照"),
        (["管理"], "宛名:参照"),
        (["管理"], "監査"),
        (["監査"], "管理"),
        ([f"{CHILD}:副本登録"], f"{CHILD}:照会"),
        ([], "管理"),
    ]:
        with pytest.raises(PermissionDenied):
            require(held, needed)


def test_malformed_held_roles_grant_nothing() -> None:
    with pytest.raises(PermissionDenied):
        require(["宛名", "garbage", "宛名:参照:更新"], "宛名:参照")
    require(["garbage", "宛名:参照"], "宛名:参照")


def test_require_with_a_malformed_need_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        require(["管理"], "照会", affair="JM123")
    with pytest.raises(ValueError):
        require(["管理"], f"{CHILD}:照会", affair=CHILD)
    with pytest.raises(ValueError):
        require(["管理"], "照会", affair="宛名")  # affair must be an affair code
    with pytest.raises(ValueError):
        require(["管理"], "なし")


def test_permission_denied_pickles() -> None:
    with pytest.raises(PermissionDenied) as exc:
        require([], "管理")
    again = pickle.loads(pickle.dumps(exc.value))
    assert (again.code, again.message_ja, again.needed) == (
        "role_required",
        exc.value.message_ja,
        "管理",
    )


# --- individual number ------------------------------------------------------------------


def test_reveal_needs_the_role_and_a_number_use_affair() -> None:
    assert can_see_individual_number(["個人番号:表示", f"{CHILD}:照会"], NUMBER_USE)
    assert can_see_individual_number(
        ["個人番号:表示", f"{CHILD}:参照"], lambda code: code in NUMBER_USE
    )


def test_reveal_refused_without_display_role() -> None:
    assert not can_see_individual_number([f"{CHILD}:照会", "宛名:参照", "管理"], NUMBER_USE)


def test_reveal_refused_without_number_use_affair() -> None:
    assert not can_see_individual_number(["個人番号:表示"], NUMBER_USE)
    assert not can_see_individual_number(["個人番号:表示", f"{OTHER}:照会"], NUMBER_USE)
    assert not can_see_individual_number(["個人番号:表示", "宛名:更新", "管理"], NUMBER_USE)
    # An audit role in the affair does not make one a user of it.
    assert not can_see_individual_number(["個人番号:表示", f"{CHILD}:監査"], NUMBER_USE)


def test_reveal_for_a_given_affair_needs_a_role_in_that_affair() -> None:
    roles = ["個人番号:表示", f"{CHILD}:照会"]
    assert can_see_individual_number(roles, NUMBER_USE, affair=CHILD)
    assert not can_see_individual_number(roles, NUMBER_USE, affair=TAX)


def test_reveal_rejects_a_bare_string_as_affair_list() -> None:
    with pytest.raises(TypeError):
        can_see_individual_number(["個人番号:表示"], CHILD)


# --- separation of duties ---------------------------------------------------------------


@pytest.mark.parametrize(
    "roles",
    [
        ["監査", "宛名:更新"],
        ["監査", "管理"],
        ["監査", f"{CHILD}:副本登録"],
        ["監査", f"{CHILD}:管理"],
        ["監査:参照", "宛名:更新"],
        [f"{CHILD}:監査", f"{TAX}:更新"],
    ],
)
def test_auditor_cannot_change_data(roles: list[str]) -> None:
    with pytest.raises(RoleConflict) as exc:
        check_separation(roles)
    assert isinstance(exc.value, ValueError)
    assert "職務分掌" in exc.value.message_ja
    assert set(exc.value.conflicting) == {str(parse_role(r)) for r in roles}
    again = pickle.loads(pickle.dumps(exc.value))
    assert again.conflicting == exc.value.conflicting


@pytest.mark.parametrize(
    "roles",
    [
        ["監査"],
        ["監査", "宛名:参照", f"{CHILD}:照会", "個人番号:表示"],
        ["管理"],
        ["監査", "監査:管理"],  # managing the audit scope is not changing data
        [],
    ],
)
def test_allowed_role_sets(roles: list[str]) -> None:
    check_separation(roles)


@pytest.mark.parametrize(
    "roles",
    [
        ["管理", "宛名:参照"],
        ["管理", "個人番号:表示", f"{CHILD}:照会"],
        ["管理", "宛名:更新", f"{CHILD}:副本登録"],
        ["管理:参照", f"{CHILD}:照会"],  # anything in the 管理 scope administers
        ["管理", f"{CHILD}:管理"],  # an affair's 管理 handles that affair's data
    ],
)
def test_administrator_holds_no_data_role_unless_the_policy_allows(roles: list[str]) -> None:
    with pytest.raises(RoleConflict) as exc:
        check_separation(roles)
    assert "職務分掌" in exc.value.message_ja and "管理の権限" in exc.value.message_ja
    assert "設定で明示的に認めている場合を除きます" in exc.value.message_ja
    assert set(exc.value.conflicting) == {str(parse_role(r)) for r in roles}
    assert admin_with_data_roles(roles)
    # A node whose policy explicitly allows it accepts the set …
    check_separation(roles, admin_may_hold_data_roles=True)
    # … but never an auditor who administers, whatever the policy.
    with pytest.raises(RoleConflict):
        check_separation(["監査", *roles, "管理"], admin_may_hold_data_roles=True)


def test_data_roles_are_all_but_administration_and_audit() -> None:
    assert data_roles(["管理", "監査", "監査:参照", f"{CHILD}:監査", "宛名:参照", f"{CHILD}:照会"]) == [
        f"{CHILD}:照会",
        "宛名:参照",
    ]
    assert data_roles(["個人番号：表示"]) == ["個人番号:表示"]  # canonical spelling
    assert not admin_with_data_roles(["管理", "監査:参照"])
    assert not admin_with_data_roles(["宛名:参照", f"{CHILD}:照会"])


def test_separation_rejects_malformed_roles() -> None:
    with pytest.raises(ValueError):
        check_separation(["監査", "なにか"])


def test_only_auditors_read_the_audit_log() -> None:
    assert may_read_audit(["監査"])
    assert may_read_audit(["監査:参照"])
    assert not may_read_audit(["管理"])
    assert not may_read_audit(["管理", "宛名:更新", "個人番号:表示"])
    assert not may_read_audit([])
    # An affair auditor reads that affair's entries only.
    assert not may_read_audit([f"{CHILD}:監査"])
    assert may_read_audit([f"{CHILD}:監査"], affair=CHILD)
    assert not may_read_audit([f"{CHILD}:監査"], affair=TAX)
