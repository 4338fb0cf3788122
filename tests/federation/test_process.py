"""Stopping a federation: wave by wave, each awaited before the next (members, hub, authority)."""

from __future__ import annotations

import signal
from pathlib import Path

from renkei.federation.process import Federation, NodeProcess


class FakePopen:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log, self.returncode = name, log, None

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        assert sig == signal.SIGTERM
        self.log.append(f"term {self.name}")

    def wait(self, timeout: float | None = None) -> int:
        self.log.append(f"gone {self.name}")
        self.returncode = 0
        return 0


def test_the_authority_outlives_the_hub_which_outlives_the_members(tmp_path: Path) -> None:
    log: list[str] = []
    fed = Federation()
    for name, wave in (("tsa", 2), ("hub", 1), ("atena", 0), ("chukan", 0)):
        fed.processes.append(
            NodeProcess(name, tmp_path, "https://x", tmp_path, FakePopen(name, log), stop_wave=wave)  # type: ignore[arg-type]
        )
    fed.stop()
    assert log == [
        "term atena", "term chukan", "gone atena", "gone chukan",
        "term hub", "gone hub",
        "term tsa", "gone tsa",
    ]
