"""Starting node processes on loopback and waiting until they answer over mutual TLS."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from renkei.core.crypto import pki


def _healthy(url: str, context: ssl.SSLContext, timeout: float) -> bool:
    """Whether GET /healthz at `url` answers 200 over mutual TLS (any failure: not yet)."""
    parts = urlsplit(url)
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout, context=context)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):  # refused, reset, TLS, timeout: still starting
        return False
    finally:
        conn.close()


@dataclass
class NodeProcess:
    name: str
    config: Path
    url: str
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    # Stopped in waves, lowest first: the members, then the hub (the authority learns the
    # members' keys from it while they send their last checkpoints), then the authority.
    stop_wave: int = 0


@dataclass
class Federation:
    processes: list[NodeProcess] = field(default_factory=list)

    def start(self, name: str, node: str, config: Path, url: str, *, stop_wave: int = 0) -> NodeProcess:
        log = config.parent / "server.log"
        with log.open("ab") as fh:  # the child writes to its own copy of the descriptor
            popen = subprocess.Popen(
                [sys.executable, "-m", "renkei.cli", "serve", node, "--config", str(config)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        proc = NodeProcess(name, config, url, log, popen, stop_wave)
        self.processes.append(proc)
        return proc

    def wait_healthy(self, ca: Path, cert: Path, key: Path, timeout: float = 60.0) -> None:
        ctx = pki.client_ssl_context(cert, key, ca)
        deadline = time.monotonic() + timeout
        for proc in self.processes:
            while True:
                if proc.popen is not None and proc.popen.poll() is not None:
                    raise RuntimeError(f"{proc.name} が起動直後に終了しました（ログ: {proc.log}）")
                if _healthy(proc.url, ctx, 2.0):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{proc.name} が応答しません（ログ: {proc.log}）")
                time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, wave by wave (`NodeProcess.stop_wave`), each awaited before the next."""
        for number in sorted({p.stop_wave for p in self.processes}):
            wave = [p for p in self.processes if p.stop_wave == number]
            for proc in wave:
                if proc.popen is not None and proc.popen.poll() is None:
                    proc.popen.send_signal(signal.SIGTERM)
            for proc in wave:
                if proc.popen is not None:
                    try:
                        proc.popen.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        proc.popen.kill()
                        proc.popen.wait()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within: SIGTERM (a service manager's stop, `kill`) interrupts like Ctrl-C.

    Node processes run in sessions of their own (Ctrl-C in a terminal must not reach them
    before the demo stops them), so only the demo can stop them: its ``finally`` must run,
    which SIGTERM's default action (die at once) never lets happen. A second SIGTERM while
    stopping is ignored, so that stopping finishes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return

    def interrupt(_sig: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
