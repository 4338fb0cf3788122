"""One status per problem code, everywhere (issue 8: malformed_message was 400 and 401).

`renkei.core.errors.STATUS_OF` is the register. This test reads every module of the
package and checks each place a Problem is made: a literal code must be registered
and the literal status must be the registered one. A place whose code or status is
computed must be named in DYNAMIC below, and the codes it can compute are checked
here too, so a new code or a second status for an old one cannot slip in.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import renkei
from renkei.core import errors, ids
from renkei.core.errors import STATUS_OF, Problem, http_problem
from renkei.core.wire import messaging
from renkei.staff.auth import AUTH_ERROR_CODES
from renkei.staff.oauth import OAuthError

PACKAGE = Path(renkei.__file__).parent


@dataclass(frozen=True)
class Site:
    """One construction of a Problem (or of a subclass through its ``__init__``)."""

    where: str  # path relative to the package and the enclosing function
    line: int
    status: int | None  # None where computed
    code: str | None  # None where computed
    source: str


# Places whose status or code is computed, and what keeps them registered (each is
# checked by a test below).
DYNAMIC = {
    "core/errors.py:from_dict": "the peer's code if registered, with its registered status",
    "core/errors.py:http_problem": "test_http_errors_have_one_code_per_status",
    "core/wire/messaging.py:open_message": "test_envelope_refusals_are_registered",
    "staff/auth.py:__init__": "test_auth_error_codes_agree_with_the_register",
    "staff/roles.py:__init__": "test_permission_denied_codes_are_403",
    "staff/oauth.py:to_problem": "test_oauth_refusals_agree_with_the_register",
    "hub/flows.py:relay_inquiry": "relays a provider's Problem, already normalized by Problem()",
    "core/wire/contract.py:_refusal": "test_contract_refusal_codes_are_registered",
    "core/wire/contract.py:check": "test_contract_refusal_codes_are_registered",
    "atena/service.py:inquiry_date": "test_identifier_codes_are_registered",
    "atena/fukuhon_import.py:_refusal_at_lines": "the chukan's invalid_fukuhon (registered) told by line",
    "core/text/layout.py:__init__": "RecordError refuses a code that is not a registered 422 (test_record_error_takes_registered_422_codes_only)",
    "atena/chonai.py:authorize": "the ordinance's decision code, all registered 403: tests/catalogue/test_ordinance.py",
    "core/imports.py:at_line": "a batch function's Problem named by file and line: its code, its registered status",
}


def _problem_classes(tree: ast.Module) -> set[str]:
    """Classes of this module that derive from Problem (their super().__init__ makes one)."""
    out = {"Problem"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if isinstance(base, ast.Name) and base.id in {"Problem", "PermissionDenied"}:
                    out.add(node.name)
    return out


def _visit(
    node: ast.AST, rel: str, problem_classes: set[str], cls: str | None, func: str | None
) -> Iterator[Site]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef):
            yield from _visit(child, rel, problem_classes, child.name, func)
            continue
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _visit(child, rel, problem_classes, cls, child.name)
            continue
        if isinstance(child, ast.Call) and _makes_problem(child, cls, problem_classes):
            args = child.args
            status = args[0] if args else None
            code = args[1] if len(args) > 1 else None
            yield Site(
                f"{rel}:{func}",
                child.lineno,
                status.value if isinstance(status, ast.Constant) else None,
                code.value if isinstance(code, ast.Constant) else None,
                ast.unparse(child)[:120],
            )
        yield from _visit(child, rel, problem_classes, cls, func)


def _sites() -> Iterator[Site]:
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        yield from _visit(tree, path.relative_to(PACKAGE).as_posix(), _problem_classes(tree), None, None)


def _makes_problem(call: ast.Call, cls: str | None, problem_classes: set[str]) -> bool:
    f = call.func
    if isinstance(f, ast.Name) and f.id == "Problem":
        return True
    if isinstance(f, ast.Attribute) and f.attr == "Problem":
        return True
    if isinstance(f, ast.Name) and f.id == "cls" and cls == "Problem":
        return True
    # super().__init__(status, code, …) in a subclass of Problem
    return (
        isinstance(f, ast.Attribute)
        and f.attr == "__init__"
        and isinstance(f.value, ast.Call)
        and isinstance(f.value.func, ast.Name)
        and f.value.func.id == "super"
        and cls in problem_classes - {"Problem"}
    )


SITES = list(_sites())


def test_the_walk_finds_the_known_places() -> None:
    # The walk must be able to fail: it sees the places this test is about.
    found = {(s.where, s.code) for s in SITES}
    assert ("core/wire/runtime.py:receive_verified", "malformed_message") in found
    assert ("core/wire/client.py:__init__", "peer_unavailable") in found
    assert ("chukan/flows.py:inquire", "bad_answer") in found
    assert len(SITES) > 100


def test_every_literal_code_is_registered_with_its_status() -> None:
    wrong = [
        f"{s.where}:{s.line} {s.code} {s.status} (registered: {STATUS_OF.get(s.code)})"
        for s in SITES
        if s.code is not None and s.status is not None and STATUS_OF.get(s.code) != s.status
    ]
    assert not wrong, "\n".join(wrong)


def test_every_computed_place_is_named() -> None:
    computed = {s.where for s in SITES if s.code is None or s.status is None}
    assert computed == set(DYNAMIC), computed ^ set(DYNAMIC)


def test_the_register_has_one_status_per_code() -> None:
    listed = [c for codes in errors._CODES_BY_STATUS.values() for c in codes]
    assert len(listed) == len(set(listed)) == len(STATUS_OF)
    assert all(400 <= status < 600 for status in STATUS_OF.values())


def test_problem_takes_the_registered_status() -> None:
    assert Problem(401, "malformed_message", "x").status == 400
    assert Problem(418, "not_registered", "x").status == 418


def test_auth_error_codes_agree_with_the_register() -> None:
    for code, (status, _) in AUTH_ERROR_CODES.items():
        assert STATUS_OF.get(code) == status, code


def _literal_calls(name: str) -> Iterator[tuple[str, ast.Call]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name:
                yield path.relative_to(PACKAGE).as_posix(), node


def test_permission_denied_codes_are_403() -> None:
    codes = set()
    for where, call in _literal_calls("PermissionDenied"):
        first = call.args[0] if call.args else None
        if isinstance(first, ast.Constant):
            codes.add(first.value)
        else:
            assert where == "staff/roles.py", where  # the unpickling helper passes it on
    assert codes and all(STATUS_OF.get(c) == 403 for c in codes), codes


def test_oauth_refusals_agree_with_the_register() -> None:
    seen = set()
    for _, call in _literal_calls("OAuthError"):
        status, error = call.args[0], call.args[1]
        assert isinstance(status, ast.Constant) and isinstance(error, ast.Constant)
        problem = OAuthError(status.value, error.value, "x").to_problem()
        assert problem.code in STATUS_OF and problem.status == status.value, (error.value, problem.code)
        seen.add(error.value)
    assert {"invalid_token", "insufficient_scope", "invalid_request"} <= seen
    # RFC 6750's invalid_request (400) is not our invalid_request (422).
    assert OAuthError(400, "invalid_request", "x").to_problem().code == "bad_authorization_header"


@pytest.mark.parametrize("status", range(400, 600))
def test_http_errors_have_one_code_per_status(status: int) -> None:
    problem = http_problem(status)
    assert problem.status == status
    assert STATUS_OF.get(problem.code) == status or (
        problem.code == f"http_{status}" and problem.code not in STATUS_OF
    )


def test_envelope_refusals_are_registered() -> None:
    assert set(messaging._ENVELOPE_CODES.values()) <= set(STATUS_OF)
    assert STATUS_OF["malformed_message"] == 400


def test_identifier_codes_are_registered() -> None:
    for kind in ids.IdKind:
        assert STATUS_OF.get(f"invalid_{kind.name.lower()}") == 422, kind


def test_contract_refusal_codes_are_registered() -> None:
    """Every code a contract field refuses with (its Refuse metadata, the identifier
    checks) is registered, with 422: a body that does not fit its message type."""
    from renkei.core.wire import contract

    codes: set[str] = {"missing_field", "invalid_request", "bad_date", "invalid_serial"}
    for mt in contract.MESSAGE_TYPES:
        for model in (mt.request, mt.reply):
            for info in model.model_fields.values():
                for meta in info.metadata:
                    if isinstance(meta, contract.Refuse):
                        codes |= {meta.code, *([meta.count] if meta.count else [])}
    codes |= {"invalid_atena_no", "invalid_procedure_code", "invalid_info_kind_code"}
    assert {c: STATUS_OF.get(c) for c in codes} == {c: 422 for c in codes}
