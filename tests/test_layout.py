"""The import rules of DESIGN.md §8, checked on the source: nodes meet only over the wire.

- a node (atena, chukan, hub, jlis, tsa, portal) imports no other node;
- the kernel (`renkei.core`) imports no node and nothing above it (staff, web,
  federation, dummy, the command line);
- `renkei.staff` imports no node and nothing above it either;
- neither the kernel nor staff loads modules by name (`importlib`, `__import__`): a node
  hands its schema to the kernel (`renkei.core.schema.register`);
- `renkei.dummy` does not import `renkei.federation` (the federation may use dummy).

Every import counts, also those inside functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "renkei"
NODES = ("atena", "chukan", "hub", "jlis", "tsa", "portal")
ABOVE_KERNEL = (*NODES, "staff", "web", "federation", "dummy", "cli", "nodes")
ABOVE_STAFF = (*NODES, "web", "federation", "dummy", "cli", "nodes")


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py") if rel.parts else ""


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level renkei package) of every renkei import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "renkei":
                names = [f"renkei.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "renkei" and len(parts) > 1:
                out.append((node.lineno, parts[1]))
    return out


def _dynamic_loads(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(m.split(".")[0] == "importlib" for m in mods):
                lines.append(node.lineno)
        if isinstance(node, ast.Name) and node.id == "__import__":
            lines.append(node.lineno)
    return lines


SOURCES = sorted(p for p in ROOT.rglob("*.py") if "migrations" not in p.parts)


def _violations() -> list[str]:
    found: list[str] = []
    for path in SOURCES:
        own = _package(path)
        where = path.relative_to(ROOT.parent)
        for line, target in _imports(path):
            if own in NODES and target in NODES and target != own:
                found.append(f"{where}:{line}: node {own} imports node {target}")
            if own == "core" and target in ABOVE_KERNEL:
                found.append(f"{where}:{line}: the kernel imports renkei.{target}")
            if own == "staff" and target in ABOVE_STAFF:
                found.append(f"{where}:{line}: staff imports renkei.{target}")
            if own == "dummy" and target == "federation":
                found.append(f"{where}:{line}: dummy imports the federation")
        if own in {"core", "staff"}:
            found += [f"{where}:{line}: loads a module by name" for line in _dynamic_loads(path)]
    return found


def test_import_rules_hold() -> None:
    assert _violations() == []


@pytest.mark.parametrize(
    ("package", "source", "rule"),
    [
        ("hub", "from renkei.chukan import service\n", "node hub imports node chukan"),
        ("core", "def f():\n    from renkei.staff import auth\n", "the kernel imports renkei.staff"),
        ("staff", "import renkei.atena.models\n", "staff imports renkei.atena"),
        ("core", "import importlib\n", "loads a module by name"),
        ("dummy", "from renkei import federation\n", "dummy imports the federation"),
    ],
)
def test_the_check_finds_each_kind_of_violation(
    package: str, source: str, rule: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The check can fail: a planted file breaking each rule is reported."""
    fake_root = tmp_path / "renkei"
    (fake_root / package).mkdir(parents=True)
    planted = fake_root / package / "planted.py"
    planted.write_text(source, encoding="utf-8")
    monkeypatch.setattr(__import__(__name__, fromlist=["x"]), "ROOT", fake_root)
    monkeypatch.setattr(__import__(__name__, fromlist=["x"]), "SOURCES", [planted])
    assert any(rule in v for v in _violations())
