"""Pseudonym acquisition figures: persons per second, CPU and peak RSS of each node.

Goal (issue 9): 新宿区's 343,000 people acquired in at most 3 minutes, each node at most
500 MB. Runs `renkei atena acquire-pseudonyms` for 新宿区 against a federation already
running and loaded (`renkei demo --serve --var VAR --base-port P`, then
`renkei dummy load --var VAR --base-port P --people N --fukuhon ''`), as its own process,
and reads each node process's CPU time and peak RSS from /proc (Linux).

Usage: .venv/bin/python bench/bench_acquire.py --var VAR [--chunk 5000] [--in-flight 2]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path


def node_pids(var: Path) -> dict[str, int]:
    """node (``org/node``) → pid of the `renkei serve` processes of the federation in ``var``."""
    out: dict[str, int] = {}
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    for line in listing.splitlines():
        found = re.search(rf" serve \w+ --config {re.escape(str(var))}/(\S+)/node\.toml$", line)
        if found:
            out[found.group(1)] = int(line.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--var", type=Path, required=True)
    ap.add_argument("--chunk", type=int, default=5000)
    ap.add_argument("--in-flight", type=int, default=2)
    args = ap.parse_args()
    var = args.var.resolve()
    pids = node_pids(var)
    if not pids:
        sys.exit(f"no federation running in {var}")
    before = {k: cpu_seconds(p) for k, p in pids.items()}
    cmd = [sys.executable, "-m", "renkei.cli", "atena", "acquire-pseudonyms",
           "--config", str(var / "shinjuku/atena/node.toml"),
           "--chunk", str(args.chunk), "--in-flight", str(args.in_flight)]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    print(f"command: wall {wall:.1f} s, exit {os.waitstatus_to_exitcode(status)}, "
          f"cpu {usage.ru_utime + usage.ru_stime:.1f} s, peak RSS {usage.ru_maxrss // 1024} MB")  # fmt: skip
    for node, pid in sorted(pids.items()):
        used = cpu_seconds(pid) - before[node]
        if used >= 0.5:
            print(f"  {node}: cpu {used:.1f} s, peak RSS {peak_rss_mb(pid)} MB")


if __name__ == "__main__":
    main()
