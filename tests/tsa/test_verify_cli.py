"""`renkei audit verify` against a running time-stamp authority: a stopped node whose audit
tail was cut, or whose audit tables were emptied, fails with a Japanese message naming what
is missing; an untouched log passes; an unreachable authority is not a pass.

The authority runs in this process (uvicorn, mutual TLS, its real port in the test
federation); the node is a J-LIS app started and stopped as `renkei serve` would (its
lifespan sends the shutdown checkpoint), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import delete, func, select, update
from starlette.testclient import TestClient
from typer.testing import CliRunner

from renkei.cli import VERIFY_UNCONFIRMED, app
from renkei.core.audit.log import AuditEvent
from renkei.core.config import load_config
from renkei.core.db import make_engine, transaction
from renkei.core.wire.serving import ListenerServer, peer_listener
from renkei.federation.topology import JLIS, TSA
from renkei.jlis.app import create_app as jlis_app
from renkei.jlis.models import audit
from renkei.tsa.app import create_app as tsa_app
from tests.api.fed import Federation, build_federation

runner = CliRunner()


@dataclass
class Authority:
    fed: Federation
    database_url: str
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        # Its own database, whatever the node's environment overrides say.
        cfg = load_config(
            self.fed.layout.config_path(TSA, "tsa"), environ={"RENKEI_NODE_DATABASE_URL": self.database_url}
        )
        asgi = tsa_app(cfg)
        # As if fetched from the hub's registry: J-LIS's keys are known.
        asgi.state.rt.registry.directory.add(self.fed.public_doc(JLIS))
        self.server = ListenerServer(peer_listener(asgi, cfg))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the time-stamp authority did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.server is not None and self.thread is not None and self.thread.is_alive():
            self.server.should_exit = True
            self.thread.join(timeout=20)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return build_federation(tmp_path_factory, "tsa-cli")


@pytest.fixture
def authority(fed: Federation, tmp_path: Path) -> Iterator[Authority]:
    """A fresh time-stamp authority for each test (it remembers every node's head)."""
    tsa = Authority(fed, f"sqlite:///{tmp_path / 'tsa.db'}")
    tsa.start()
    try:
        yield tsa
    finally:
        tsa.stop()


@pytest.fixture
def node(authority: Authority, db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A J-LIS config of its own (fresh data directory and database, on each backend)."""
    source = authority.fed.layout.config_path(JLIS, "jlis")
    path = tmp_path / "jlis" / "node.toml"
    path.parent.mkdir()
    path.write_text(
        source.read_text(encoding="utf-8").replace(
            str(authority.fed.layout.node_dir(JLIS, "jlis").resolve()), str(path.parent)
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("RENKEI_NODE_DATABASE_URL", db_url)
    return path


def _run_node(config: Path, events: int) -> None:
    """Start the node, audit ``events`` things, stop it (the shutdown checkpoint goes out)."""
    asgi = jlis_app(load_config(config))
    with TestClient(asgi):
        rt = asgi.state.rt
        with transaction(rt.sessions) as s:
            rt.audit.append_many(
                s, [AuditEvent(actor="J0001", action="test.event", outcome="ok") for _ in range(events)]
            )


def _verify(config: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["audit", "verify", "--config", str(config), *extra])
    return result.exit_code, result.output


def test_untouched_passes_a_cut_tail_and_a_wipe_fail(node: Path) -> None:
    _run_node(node, 3)
    _run_node(node, 2)
    engine = make_engine(load_config(node).database_url)
    try:
        with engine.connect() as c:
            last = c.execute(select(func.max(audit.entries.c.seq))).scalar_one()
            receipts = [r[0] for r in c.execute(select(audit.receipts.c.seq).order_by(audit.receipts.c.seq))]
        # Each stop's checkpoint was countersigned before the node exited.
        assert last >= 5 and receipts and receipts[-1] == last, (last, receipts)

        code, out = _verify(node)
        assert code == 0, out
        assert "改ざんは見つかりませんでした" in out and f"タイムスタンプ局の記録（{last:,} 番まで）と一致" in out

        # Tail truncation: the newest entry and its checkpoint deleted, the head row rewound.
        with engine.begin() as c:
            e, cp, h = audit.entries, audit.checkpoints, audit.head
            c.execute(delete(e).where(e.c.seq == last))
            c.execute(delete(cp).where(cp.c.seq == last))
            prev = c.execute(select(e.c.hash).where(e.c.seq == last - 1)).scalar_one()
            prev_cp = c.execute(select(func.max(cp.c.seq))).scalar() or 0
            c.execute(update(h).values(seq=last - 1, hash=prev, last_checkpoint_seq=prev_cp))
        assert _verify(node, "--offline")[0] == 0  # the local chain alone cannot see it
        code, out = _verify(node)
        assert code == 1, out
        assert (
            f"監査ログの末尾 1 件が失われています（タイムスタンプ局の記録: {last:,} 番まで、"
            f"この監査ログ: {last - 1:,} 番まで）" in out
        ), out
        assert "problem=truncated" in out

        # A wipe: every audit table emptied.
        with engine.begin() as c:
            for table in (audit.entries, audit.checkpoints, audit.head, audit.receipts):
                c.execute(delete(table))
        code, out = _verify(node)
        assert code == 1, out
        assert "監査ログが消去されています" in out and f"{last:,} 件が失われています" in out, out
        assert "problem=wiped" in out
    finally:
        engine.dispose()


def test_a_rewritten_history_fails_even_when_carried_past_the_authoritys_head(node: Path) -> None:
    _run_node(node, 4)
    engine = make_engine(load_config(node).database_url)
    try:
        with engine.connect() as c:
            last = c.execute(select(func.max(audit.entries.c.seq))).scalar_one()
        # Rebuild the whole chain with other content and run on: it verifies locally, and its
        # longer head is even countersigned (it moves forward), but its hash at the seq the
        # authority stamped before is not the one the authority countersigned then.
        with engine.begin() as c:
            for table in (audit.entries, audit.checkpoints, audit.head, audit.receipts):
                c.execute(delete(table))
    finally:
        engine.dispose()
    asgi = jlis_app(load_config(node))
    with TestClient(asgi):
        rt = asgi.state.rt
        with transaction(rt.sessions) as s:
            rt.audit.append_many(
                s, [AuditEvent(actor="X9999", action="forged", outcome="ok") for _ in range(last + 3)]
            )
    engine = make_engine(load_config(node).database_url)
    try:
        with engine.connect() as c:
            receipts = [r[0] for r in c.execute(select(audit.receipts.c.seq))]
    finally:
        engine.dispose()
    assert receipts == [last + 3]  # the forged head was stamped: it moved forward
    code, out = _verify(node)
    assert code == 1, out
    assert f"タイムスタンプ局が記録した {last:,} 番の記録がこの監査ログと一致しません" in out, out
    assert "problem=authority_mismatch" in out


def test_without_the_authority_the_length_is_unconfirmed(authority: Authority, node: Path) -> None:
    _run_node(node, 2)
    assert _verify(node)[0] == 0
    authority.stop()
    try:
        code, out = _verify(node)
        assert code == VERIFY_UNCONFIRMED, out
        assert "タイムスタンプ局に照会できないため" in out and "確認できませんでした" in out
        code, out = _verify(node, "--offline")
        assert code == 0 and "--offline" in out and "確認していません" in out, out
    finally:
        authority.start()  # as the fixture found it
