"""The import rules of DESIGN.md §8, checked on the source: nodes meet only over the wire.

- a node (atena, chukan, hub, jlis, tsa, portal) imports no other node;
- the kernel (`renkei.core`) imports no node and nothing above it (staff, web,
  federation, dummy, the command line);
- `renkei.staff` imports no node and nothing above it either;
- neither the kernel nor staff loads modules by name (`importlib`, `__import__`): a node
  hands its schema to the kernel (`renkei.core.schema.register`);
- `renkei.dummy` does not import `renkei.federation` (the federation may use dummy);
- no module imports httpx: aiohttp is the one HTTP client of renkei (STACK.md), httpx
  is for the tests only (the `test` extra);
- no import cycle among renkei's modules (the synthetic-population generator had one).

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


def _third_party(path: Path) -> list[tuple[int, str]]:
    """(line, top-level name) of every import of a package other than renkei."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module.split(".")[0]))
    return [(line, name) for line, name in out if name != "renkei"]


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
        for line, name in _third_party(path):
            if name == "httpx":
                found.append(f"{where}:{line}: imports httpx (for tests only; renkei uses aiohttp)")
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
        ("federation", "def f():\n    import httpx\n", "imports httpx"),
        ("core", "from httpx import AsyncClient\n", "imports httpx"),
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


# --- import cycles ----------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_imports(path: Path, modules: set[str]) -> set[str]:
    """The modules of `modules` the file imports (`from package import module` names the
    module; `from module import name` the module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                while parts and ".".join(parts) not in modules:
                    parts.pop()  # `import renkei.a.b` of a name in module renkei.a
                if parts:
                    out.add(".".join(parts))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in modules:
                    out.add(full)
                elif node.module in modules:
                    out.add(node.module)
    return out


def _cycles() -> list[list[str]]:
    """Every set of modules that import each other round (strongly connected, Tarjan)."""
    modules = {_module_name(p): p for p in SOURCES}
    graph = {name: sorted(_module_imports(path, set(modules))) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The shape the generator had: synth imports a stage, the stage imports back from
    synth inside a function."""
    fake_root = tmp_path / "renkei"
    (fake_root / "dummy").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "model.py": "",
        "synth.py": "from renkei.dummy import business\nfrom renkei.dummy.model import X\n",
        "business.py": "from renkei.dummy.model import Y\ndef f():\n    from renkei.dummy.synth import stage_rng\n",
    }
    for name, source in files.items():
        (fake_root / "dummy" / name).write_text(source, encoding="utf-8")
    module = __import__(__name__, fromlist=["x"])
    monkeypatch.setattr(module, "ROOT", fake_root)
    monkeypatch.setattr(module, "SOURCES", sorted((fake_root / "dummy").glob("*.py")))
    assert _cycles() == [["renkei.dummy.business", "renkei.dummy.synth"]]
    (fake_root / "dummy" / "business.py").write_text("from renkei.dummy.model import Y\n", encoding="utf-8")
    assert _cycles() == []
