"""The resident register feed as a file (`renkei atena import feed`): every kind of 異動,
idempotent per event id, out-of-order events placed by effective date, CSV and fixed
width in UTF-8 and CP932, malformed records all reported and nothing applied. Both
backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from renkei.atena import history, search, service
from renkei.atena.feed_file import import_feed, read_feed, write_feed
from renkei.atena.models import SCHEMA, Base, BusinessLink, Person, RegisterEvent, audit
from renkei.core import ids
from renkei.core.config import NodeConfig, load_config
from renkei.core.db import make_engine, migrate
from renkei.core.errors import Problem
from renkei.staff.admin import node_cipher
from tests.import_kit import cli, configs, counts, person

LEDGER_AND_AUDIT = {"imports", "audit_entries", "audit_head", "audit_checkpoints"}
HOUSEHOLD = ids.make_atena_no(700_001)
SECOND_HOUSEHOLD = ids.make_atena_no(700_002)


@pytest.fixture
def node(tmp_path: Path, db_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[Path, NodeConfig, Engine]]:
    atena_cfg, _ = configs(tmp_path, request.config._tmp_path_factory.getbasetemp(), db_url)  # type: ignore[attr-defined]
    engine = make_engine(db_url)
    cfg = load_config(atena_cfg)
    migrate(engine, SCHEMA.migrations, SCHEMA.metadata, {"field_cipher": node_cipher(cfg)})
    yield atena_cfg, cfg, engine
    engine.dispose()


def event(event_id: str, kind: str, day: str, who: dict[str, Any], **more: Any) -> dict[str, Any]:
    rec = {
        "event_id": event_id,
        "kind": kind,
        "effective_on": day,
        "notified_on": day,
        "individual_number": who["individual_number"],
        "family_name": who["family_name"],
        "given_name": who["given_name"],
        "family_kana": who["family_kana"],
        "given_kana": who["given_kana"],
        "birth_date": who["birth_date"],
        "sex": who["sex"],
        "postal_code": who["postal_code"],
        "address": who["address"],
        "lg_code": who["lg_code"],
    }
    rec.update(more)
    return rec


def _atena_no(s: Session, cfg: NodeConfig, who: dict[str, Any]) -> str:
    index = node_cipher(cfg).blind_index(who["individual_number"])
    found = s.scalar(select(Person.atena_no).where(Person.individual_number_index == index))
    assert found is not None
    return found


def _no_tables_but_ledger_changed(before: dict[str, int], after: dict[str, int]) -> None:
    assert {k: v for k, v in after.items() if k not in LEDGER_AND_AUDIT} == {
        k: v for k, v in before.items() if k not in LEDGER_AND_AUDIT
    }


def test_every_kind_of_change_then_the_same_file_changes_nothing(
    node: tuple[Path, NodeConfig, Engine], tmp_path: Path
) -> None:
    _, cfg, engine = node
    father, mother, baby, old = person(1), person(2), person(3), person(4)
    baby = {**baby, "birth_date": "2025-05-05", "family_name": father["family_name"]}
    moved = "東京都新宿区西新宿二丁目8番1号"
    events = [
        # Listed out of date order on purpose: applied by 異動日.
        event("E0003", "出生", "2025-05-05", {**baby, "address": moved}, household_no=HOUSEHOLD, relationship="子"),
        event("E0001", "転入", "2025-04-01", father, household_no=HOUSEHOLD, relationship="世帯主",
              resident_atena_no=ids.make_atena_no(500_001), other_lg_code="131148", other_address="東京都中野区中野四丁目1番"),
        event("E0002", "転入", "2025-04-01", mother, household_no=HOUSEHOLD, relationship="妻"),
        event("E0004", "転居", "2025-05-01", {**father, "address": moved}, household_no=HOUSEHOLD, relationship="世帯主"),
        event("E0005", "転居", "2025-05-01", {**mother, "address": moved}, household_no=HOUSEHOLD, relationship="妻"),
        event("E0006", "氏名変更", "2025-06-01", {**mother, "address": moved, "family_name": "新姓", "family_kana": "シンセイ"},
              household_no=SECOND_HOUSEHOLD, relationship="世帯主"),
        event("E0007", "転入", "2024-01-01", old, household_no=ids.make_atena_no(700_003), relationship="世帯主"),
        event("E0008", "職権修正", "2024-02-01", {**old, "given_name": "正名"}),
        event("E0009", "死亡", "2025-07-01", {**old, "given_name": "正名"}, household_no=ids.make_atena_no(700_003)),
        event("E0010", "転出", "2025-08-01", {**father, "address": moved}, household_no=HOUSEHOLD,
              other_lg_code="131016", other_address="東京都千代田区千代田1番1号"),
    ]  # fmt: skip
    path = tmp_path / "changes-20250801.csv"
    write_feed(events, path)
    seen: list[tuple[int, int | None]] = []
    done = import_feed(cfg, path, system="jumin01", actor="cli:tester", progress=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 10), (10, 10)]
    r = done.result
    assert (r.read, r.applied, r.duplicates, r.persons) == (10, 10, 0, 4)
    assert r.outcomes == {"applied": 10}
    assert len(r.arrivals) == 4  # three 転入, one 出生
    assert "新たに 10 件反映" in done.summary()
    with Session(engine) as s:
        a_father, a_mother, a_baby, a_old = (_atena_no(s, cfg, p) for p in (father, mother, baby, old))
        assert sorted(r.arrivals) == sorted([a_father, a_mother, a_baby, a_old])
        f_now = service.resident_detail(s, a_father).current
        assert (f_now.status, f_now.change_kind, f_now.address) == ("former", "転出", moved)
        m_now = service.resident_detail(s, a_mother).current
        assert (m_now.family_name, m_now.change_kind, m_now.status) == ("新姓", "氏名変更", "resident")
        o_now = service.resident_detail(s, a_old).current
        assert (o_now.given_name, o_now.change_kind, o_now.status) == ("正名", "死亡", "former")
        assert [v.change_kind for v in service.resident_detail(s, a_old).history] == ["死亡", "職権修正", "転入"]
        # Households: on 2025-05-10 the three lived together; after 転出 and 氏名変更 only the child is left.
        on = history.household_on(s, HOUSEHOLD, date(2025, 5, 10))
        assert on.head == a_father and {m.relationship for m in on.members} == {"世帯主", "妻", "子"}
        assert history.household_on(s, HOUSEHOLD, date(2025, 8, 1)).members == (history.Member(a_baby, "子"),)
        assert history.household_on(s, SECOND_HOUSEHOLD, date(2025, 8, 1)).head == a_mother
        # Where did the father live on 2025-04-15, and as what?
        then = history.as_of(s, a_father, date(2025, 4, 15))
        assert then.version is not None and then.version.address == father["address"] and then.status == "resident"
        assert history.as_of(s, a_father, date(2025, 3, 31)).status == "unregistered"
        # Former residents stay searchable.
        page = search.search(s, search.parse_criteria({"kana": old["family_kana"], "birth_date": old["birth_date"]}))
        assert page.total == 1 and page.rows[0].residence == "former"
        # The register's own number is linked under its system; sources name the file.
        link = s.scalar(select(BusinessLink.atena_no).where(BusinessLink.system == "jumin01"))
        assert link == a_father
        assert f_now.source == "feed:jumin01:changes-20250801.csv"
        stored = dict(s.execute(select(RegisterEvent.event_id, RegisterEvent.other_lg_code)).tuples().all())
        assert stored["E0001"] == "131148" and stored["E0010"] == "131016" and len(stored) == 10
    # The same file again: nothing new, and it says so.
    before = counts(engine, Base.metadata)
    again = import_feed(cfg, path, system="jumin01", actor="cli:tester")
    assert (again.result.applied, again.result.duplicates) == (0, 10)
    _no_tables_but_ledger_changed(before, counts(engine, Base.metadata))


def test_a_late_older_event_becomes_history(node: tuple[Path, NodeConfig, Engine], tmp_path: Path) -> None:
    _, cfg, engine = node
    who = person(5)
    first = tmp_path / "day1.csv"
    write_feed([event("A1", "転入", "2025-01-10", who), event("A3", "転居", "2025-06-01", {**who, "address": "六月の住所"})], first)
    import_feed(cfg, first, system="jumin01", actor="cli:tester")
    late = tmp_path / "day2.csv"
    write_feed([event("A2", "転居", "2025-03-01", {**who, "address": "三月の住所"})], late)
    done = import_feed(cfg, late, system="jumin01", actor="cli:tester")
    assert done.result.outcomes == {"history": 1}
    with Session(engine) as s:
        atena_no = _atena_no(s, cfg, who)
        assert service.resident_detail(s, atena_no).current.address == "六月の住所"
        assert history.as_of(s, atena_no, date(2025, 4, 1)).version.address == "三月の住所"  # type: ignore[union-attr]
        assert history.as_of(s, atena_no, date(2025, 2, 1)).version.address == who["address"]  # type: ignore[union-attr]
        outcome = s.scalar(select(RegisterEvent.outcome).where(RegisterEvent.event_id == "A2"))
        assert outcome == "history"


@pytest.mark.parametrize(("shape", "encoding"), [("fixed", "cp932"), ("fixed", "utf-8"), ("csv", "cp932")])
def test_fixed_width_and_cp932(node: tuple[Path, NodeConfig, Engine], tmp_path: Path, shape: str, encoding: str) -> None:
    _, cfg, engine = node
    who = {**person(6), "family_name": "髙橋", "given_name": "𠮷子" if encoding == "utf-8" and shape == "csv" else "惠子"}
    path = tmp_path / f"changes.{'csv' if shape == 'csv' else 'dat'}"
    write_feed(
        [event("F1", "転入", "20250401", who, household_no=HOUSEHOLD, relationship="世帯主"),
         event("F2", "転居", "R7.5.1" if shape == "csv" else "20250501", {**who, "address": "東京都新宿区大久保二丁目3番"},
               household_no=HOUSEHOLD, relationship="世帯主")],
        path, shape=shape, encoding=encoding,
    )  # fmt: skip
    read = read_feed(path)
    assert (read.shape, read.encoding, read.error_count) == (shape, encoding, 0)
    if shape == "fixed":
        assert all(len(line.encode("cp932")) == 694 for line in path.read_bytes().decode(encoding).splitlines())
    done = import_feed(cfg, path, system="jumin01", actor="cli:tester")
    assert done.result.applied == 2
    with Session(engine) as s:
        now = service.resident_detail(s, _atena_no(s, cfg, who)).current
        assert (now.family_name, now.given_name, now.address, now.effective_on) == (
            "髙橋", who["given_name"], "東京都新宿区大久保二丁目3番", date(2025, 5, 1)
        )


def test_malformed_records_are_all_reported_and_nothing_applied(
    node: tuple[Path, NodeConfig, Engine], tmp_path: Path
) -> None:
    config, cfg, engine = node
    a, b = person(7), person(8)
    bad_number = a["individual_number"][:-1] + str((int(a["individual_number"][-1]) + 1) % 10)
    events = [
        event("B1", "転入", "2025-04-01", a),  # fine
        event("B2", "引越し", "2025-04-01", b),  # unknown kind
        event("B3", "転入", "2025-13-01", {**b, "individual_number": bad_number}),  # bad dates and number
        event("B4", "転居", "2025-05-01", {**a, "address": ""}),  # a required field empty
        event("B5", "転入", "2025-04-01", b, household_no=HOUSEHOLD),  # 世帯番号 without 続柄
    ]
    path = tmp_path / "bad.csv"
    write_feed(events, path)
    before = counts(engine, Base.metadata)
    with pytest.raises(Problem) as exc:
        import_feed(cfg, path, system="jumin01", actor="cli:tester")
    assert exc.value.code == "bad_feed" and exc.value.extra["error_count"] == 6, exc.value.extra["errors"]
    got = {(e["line"], e["field"]) for e in exc.value.extra["errors"]}
    assert got == {(3, "異動事由"), (4, "異動日"), (4, "届出日"), (4, "個人番号"), (5, "住所"), (6, "続柄")}
    assert all(e["file"] == "bad.csv" and e["reason"] for e in exc.value.extra["errors"])
    assert "bad.csv の 3 行目（項目「異動事由」）" in exc.value.title
    after = counts(engine, Base.metadata)
    _no_tables_but_ledger_changed(before, after)
    assert after["imports"] == before["imports"]  # no ledger row for a refused file
    with Session(engine) as s:  # the refusal is audited, without any number
        refusal = s.execute(select(audit.entries.c.action, audit.entries.c.outcome, audit.entries.c.detail)).all()[-1]
    assert refusal[:2] == ("register.feed", "bad_feed") and bad_number not in str(refusal)
    # The command line lists every error and exits 1; no number is echoed.
    result = cli("atena", "import", "feed", str(path), "--config", str(config))
    assert result.returncode == 1, result.stderr
    assert "誤りのある記録が 6 件" in result.stderr and "bad.csv の 6 行目（項目「続柄」）" in result.stderr
    assert bad_number not in result.stderr + result.stdout
    # Fixed width: a short line and undecodable bytes are reported at their lines.
    fixed = tmp_path / "bad.dat"
    write_feed([event("C1", "転入", "2025-04-01", a)], fixed, shape="fixed", encoding="cp932")
    fixed.write_bytes(fixed.read_bytes() + b"TOO SHORT\r\n" + b"\x81\x20" * 347 + b"\r\n")
    read = read_feed(fixed)
    assert sorted((e.line, e.reason.split("（")[0]) for e in read.errors) == [(2, "レコードの長さが違います"), (3, "CP932")]
    # A header with an unknown column and a missing required one.
    header = tmp_path / "header.csv"
    header.write_text("異動ID,異動事由,異動日,何か\r\nX1,転入,2025-04-01,1\r\n", encoding="utf-8")
    read = read_feed(header)
    assert {(e.line, e.field) for e in read.errors} >= {(1, "何か"), (1, "個人番号")}


def test_an_event_id_is_applied_once(node: tuple[Path, NodeConfig, Engine], tmp_path: Path) -> None:
    _, cfg, engine = node
    a = person(9)
    first = tmp_path / "one.csv"
    write_feed([event("D1", "転入", "2025-04-01", a)], first)
    import_feed(cfg, first, system="jumin01", actor="cli:tester")
    # The same id with other content (in another file) is refused; repeated inside a file too.
    other = tmp_path / "two.csv"
    write_feed([event("D1", "転入", "2025-04-02", a)], other)
    before = counts(engine, Base.metadata)
    with pytest.raises(Problem) as exc:
        import_feed(cfg, other, system="jumin01", actor="cli:tester")
    assert exc.value.code == "bad_feed" and "反映済み" in exc.value.extra["errors"][0]["reason"]
    twice = tmp_path / "three.csv"
    write_feed([event("D2", "転居", "2025-05-01", {**a, "address": "X"}), event("D2", "転居", "2025-05-01", {**a, "address": "Y"})], twice)
    with pytest.raises(Problem) as exc:
        import_feed(cfg, twice, system="jumin01", actor="cli:tester")
    assert exc.value.extra["errors"][0]["line"] == 3
    _no_tables_but_ledger_changed(before, counts(engine, Base.metadata))
    # The same event with its dates written otherwise (和暦, YYYYMMDD) is the same event.
    wareki = tmp_path / "wareki.csv"
    write_feed([event("D1", "転入", "R7.4.1", {**a, "birth_date": a["birth_date"].replace("-", "")}, notified_on="2025-04-01")], wareki)
    assert import_feed(cfg, wareki, system="jumin01", actor="cli:tester").result.duplicates == 1
    # The same id with the same content in one file counts once.
    same = tmp_path / "four.csv"
    write_feed([event("D3", "転居", "2025-05-01", {**a, "address": "X"})] * 2, same)
    done = import_feed(cfg, same, system="jumin01", actor="cli:tester")
    assert (done.result.applied, done.result.duplicates) == (1, 1)


def test_the_command_line(node: tuple[Path, NodeConfig, Engine], tmp_path: Path) -> None:
    config, _, _ = node
    path = tmp_path / "cli.csv"
    write_feed([event("G1", "転入", "2025-04-01", person(11)), event("G2", "出生", "2025-04-02", {**person(12), "birth_date": "2025-04-02"})], path, encoding="cp932")
    result = cli("atena", "import", "feed", str(path), "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "新たに 2 件反映" in result.stdout and "符号取得の対象（転入・出生） 2 人" in result.stdout
    assert "csv・cp932" in result.stdout
    again = cli("atena", "import", "feed", str(path), "--config", str(config))
    assert again.returncode == 0 and "反映済みの異動 2 件" in again.stdout
    usage = cli("atena", "import", "feed", str(tmp_path / "missing.csv"), "--config", str(config))
    assert usage.returncode == 2 and "ありません" in usage.stderr


def test_events_applied_meanwhile_by_another_process_refuse_this_one(
    node: tuple[Path, NodeConfig, Engine], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, cfg, engine = node
    path = tmp_path / "race.csv"
    write_feed([event("R1", "転入", "2025-04-01", person(40))], path)
    import_feed(cfg, path, system="jumin01", actor="cli:tester")
    # As if the other process committed between this one's look-up and its insert.
    from sqlalchemy import false

    from renkei.atena import feed

    real_among = feed.bulk.among
    monkeypatch.setattr(feed.bulk, "among", lambda s, col, values: false() if col is RegisterEvent.event_id else real_among(s, col, values))
    before = counts(engine, Base.metadata)
    with pytest.raises(Problem) as exc:
        import_feed(cfg, path, system="jumin01", actor="cli:tester")
    assert exc.value.code == "feed_conflict" and exc.value.status == 409
    _no_tables_but_ledger_changed(before, counts(engine, Base.metadata))
