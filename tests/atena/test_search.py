"""Addressee search (renkei.atena.search) on both engines: every criterion alone and
combined, typed as staff type it, residents and non-residents, former names; numbers;
bad input; the keys kept by registration and built for existing rows by the migration."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from renkei.atena import search, service
from renkei.atena.models import SCHEMA, Base, Person, PersonSearchKey
from renkei.core.crypto.field import FieldCipher
from renkei.core.db import make_engine, make_sessionmaker, migrate
from renkei.core.errors import Problem
from renkei.core.ids import make_atena_no, make_individual_number
from tests.conftest import migrated

NOW = datetime(2026, 4, 1, tzinfo=UTC)
NUMBERS = [make_individual_number(f"{n:011d}") for n in (12345678901, 98320567321, 23456789012, 34567890123, 45678901234, 56789012345)]


def _rec(i: int, **over: Any) -> dict[str, Any]:
    base = {
        "individual_number": NUMBERS[i],
        "family_name": "山田",
        "given_name": "太郎",
        "family_kana": "ヤマダ",
        "given_kana": "タロウ",
        "birth_date": "1985-04-01",
        "sex": "1",
        "postal_code": "1600023",
        "address": "東京都新宿区西新宿二丁目8番1号",
        "lg_code": "131041",
        "business_numbers": {},
    }
    return base | over


PEOPLE = [
    _rec(0, business_numbers={"tax": make_atena_no(777)}),
    _rec(1, family_name="髙橋", given_name="花子", family_kana="タカハシ", given_kana="ハナコ", sex="2",
         birth_date="1990-12-24", address="東京都新宿区西新宿2丁目8番地の1 新宿パークタワー 501号室"),
    _rec(2, family_name="渡邉", given_name="健", family_kana="ワタナベ", given_kana="ケン",
         birth_date="1952-01-15", address="東京都新宿区西新宿二丁目80番3号"),
    _rec(3, family_name="佐藤", given_name="優子", family_kana="サトウ", given_kana="ユウコ", sex="2",
         birth_date="2001-07-07", address="東京都中野区中央四丁目10番地の2"),
    _rec(4, family_name="ヴァレンタイン", given_name="ジョン", family_kana="ヴァレンタイン", given_kana="ジョン",
         birth_date="1979-03-03", address="東京都新宿区大久保一丁目1番1号"),
    _rec(5, family_name="山田", given_name="次郎", family_kana="ヤマダ", given_kana="ジロウ",
         birth_date="1988-08-08", address="東京都新宿区四谷三丁目3番3号"),
]  # fmt: skip


@dataclass
class Db:
    sessions: sessionmaker[Session]
    cipher: FieldCipher
    nos: list[str]

    def find(self, **fields: str) -> list[str]:
        with self.sessions() as s:
            return [f.atena_no for f in search.search(s, search.parse_criteria(fields)).rows]

    def names(self, **fields: str) -> set[str]:
        with self.sessions() as s:
            return {f.family_name + f.given_name for f in search.search(s, search.parse_criteria(fields)).rows}


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    engine, sessions = migrated(db_url, "atena")
    cipher = FieldCipher.generate()
    with sessions() as s:
        done = service.register_parsed(s, cipher, service.parse_residents(PEOPLE), NOW)
        # the sixth person is a non-resident (住登外者)
        s.execute(update(Person).where(Person.atena_no == done.atena_nos[5]).values(residence="non_resident"))
        search.refresh_search_keys(s, [done.atena_nos[5]])
        s.commit()
    try:
        yield Db(sessions, cipher, done.atena_nos)
    finally:
        engine.dispose()


def test_kana_name_alone_typed_any_way(db: Db) -> None:
    assert db.names(kana="ヤマダ") == {"山田太郎", "山田次郎"}
    assert db.names(kana="やまだ") == db.names(kana="ﾔﾏﾀﾞ") == db.names(kana="ヤマダ　")
    assert db.names(kana="ヤマダ タロ") == {"山田太郎"}
    assert db.names(kana="サトー") == {"佐藤優子"}  # 長音 for ウ
    assert db.names(kana="バレンタイン") == {"ヴァレンタインジョン"}  # ヴァ ≡ バ
    assert db.names(kana="タカハシハナコ") == {"髙橋花子"}


def test_kanji_name_with_old_and_new_forms(db: Db) -> None:
    assert db.names(name="高橋") == {"髙橋花子"}
    assert db.names(name="髙橋 花子") == {"髙橋花子"}
    assert db.names(name="渡辺") == db.names(name="渡邊") == {"渡邉健"}
    assert db.names(name="山田") == {"山田太郎", "山田次郎"}


def test_birth_date_in_wareki_or_gregorian_full_width_accepted(db: Db) -> None:
    assert db.names(birth_date="昭和60年4月1日") == {"山田太郎"}
    assert db.names(birth_date="Ｓ６０．４．１") == db.names(birth_date="１９８５－０４－０１") == {"山田太郎"}
    assert db.names(birth_date="H2.12.24") == {"髙橋花子"}


def test_address_in_any_notation(db: Db) -> None:
    both = {"山田太郎", "髙橋花子"}
    assert db.names(address="西新宿2-8-1") == both
    assert db.names(address="西新宿２丁目８－１") == both
    assert db.names(address="新宿区西新宿二丁目八番一号") == both
    assert db.names(address="東京都新宿区西新宿2-8") == both  # not 2-80
    assert db.names(address="西新宿2-80") == {"渡邉健"}
    assert db.names(address="中野区中央4") == {"佐藤優子"}
    assert db.names(address="西新宿") == {"山田太郎", "髙橋花子", "渡邉健"}


def test_criteria_combined(db: Db) -> None:
    assert db.names(kana="ヤマダ", birth_date="S63.8.8") == {"山田次郎"}
    assert db.names(name="山田", address="四谷3") == {"山田次郎"}
    assert db.names(kana="ヤマダ", address="西新宿") == {"山田太郎"}
    assert db.names(kana="ヤマダ", birth_date="2000-01-01") == set()


def test_residents_and_non_residents(db: Db) -> None:
    assert db.names(kana="ヤマダ", residence="non_resident") == {"山田次郎"}
    assert db.names(kana="ヤマダ", residence="resident") == {"山田太郎"}
    with db.sessions() as s:
        found = search.search(s, search.parse_criteria({"kana": "ヤマダジ"})).rows
    assert [(f.residence, f.current) for f in found] == [("non_resident", True)]


def test_a_new_version_moves_the_keys_and_history_finds_the_former_name(db: Db) -> None:
    with db.sessions() as s:
        married = PEOPLE[3] | {"family_name": "鈴木", "family_kana": "スズキ", "address": "東京都新宿区高田馬場一丁目2番3号"}
        service.register_parsed(s, db.cipher, service.parse_residents([married]), NOW)
        s.commit()
    assert db.names(kana="サトウ") == set()
    assert db.names(kana="スズキ") == {"鈴木優子"}
    with db.sessions() as s:
        found = search.search(s, search.parse_criteria({"kana": "サトウ", "history": "1"})).rows
    assert [(f.family_name, f.current) for f in found] == [("佐藤", False)]
    assert db.names(address="髙田馬場1-2") == {"鈴木優子"}  # 異体字 in addresses too
    with db.sessions() as s:  # two versions, two key rows; registering again adds none
        before = s.scalar(select(func.count()).select_from(PersonSearchKey))
        service.register_parsed(s, db.cipher, service.parse_residents([married]), NOW)
        s.commit()
        assert s.scalar(select(func.count()).select_from(PersonSearchKey)) == before == len(PEOPLE) + 1


def test_numbers_typed_in_full_width(db: Db) -> None:
    wide = db.nos[0].translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    with db.sessions() as s:
        assert search.find_by_atena_no(s, wide) == db.nos[0]
        tax = make_atena_no(777).translate(str.maketrans("0123456789", "０１２３４５６７８９"))
        assert search.find_by_business_no(s, "tax", tax) == db.nos[0]
        wide_number = " ".join(NUMBERS[1][i : i + 4] for i in (0, 4, 8)).translate(
            str.maketrans("0123456789", "０１２３４５６７８９")
        )
        assert search.find_by_individual_number(s, db.cipher, wide_number) == db.nos[1]
        for call, code in [
            (lambda: search.find_by_atena_no(s, "12a"), "invalid_atena_no"),
            (lambda: search.find_by_atena_no(s, make_atena_no(99999)), "unknown_atena_no"),
            (lambda: search.find_by_business_no(s, "tax", make_atena_no(778)), "unknown_business_atena_no"),
            (lambda: search.find_by_individual_number(s, db.cipher, make_individual_number("11111111111")), "unknown_individual_number"),
            (lambda: search.find_by_individual_number(s, db.cipher, NUMBERS[0][:-1] + str((int(NUMBERS[0][-1]) + 1) % 10)), "invalid_individual_number"),
        ]:
            with pytest.raises(Problem) as exc:
                call()
            assert exc.value.code == code


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({}, "missing_criteria", "検索条件"),
        ({"kana": "新宿"}, "bad_kana", "カタカナまたはひらがな"),
        ({"kana": "ヤ%"}, "bad_kana", "カタカナ"),
        ({"kana": "ヤ"}, "too_broad", "2文字以上"),
        ({"birth_date": "平成31年5月1日"}, "bad_date", "令和"),
        ({"birth_date": "2026-02-30"}, "bad_date", "存在しない日付"),
        ({"kana": "ア" * 61}, "too_long", "60文字以内"),
        ({"name": "山%"}, "bad_name", "使用できない文字"),
        ({"kana": "ヤマダ", "residence": "x"}, "bad_residence", "住民区分"),
    ],
)
def test_bad_criteria_are_japanese_422s(fields: dict[str, str], code: str, words: str) -> None:
    with pytest.raises(Problem) as exc:
        search.parse_criteria(fields)
    assert (exc.value.status, exc.value.code) == (422, code)
    assert words in exc.value.title


def test_pages_and_the_count_cap(db: Db) -> None:
    with db.sessions() as s:
        page = search.search(s, search.parse_criteria({"address": "新宿区"}), page_size=2)
        assert (page.total, page.pages, len(page.rows)) == (5, 3, 2)
        third = search.search(s, search.parse_criteria({"address": "新宿区"}), page=3, page_size=2)
        assert len(third.rows) == 1 and not {r.atena_no for r in third.rows} & {r.atena_no for r in page.rows}
    assert search.SearchPage([], search.COUNT_CAP + 1, 1, 20).capped


def test_the_migration_builds_keys_for_persons_already_registered(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(SCHEMA.migrations)))
        cfg.attributes["engine"] = engine
        cfg.attributes["metadata"] = Base.metadata
        from alembic.script import ScriptDirectory

        before = ScriptDirectory.from_config(cfg).get_revision("atena_0010").down_revision
        command.upgrade(cfg, str(before))  # the schema just before the search keys
        now = NOW.replace(tzinfo=None)
        with engine.begin() as conn:
            conn.execute(sa.text(
                "insert into persons (atena_no, residence, pseudonym_status, created_at) values (:a, 'resident', 'none', :t)"
            ), {"a": make_atena_no(1), "t": now})  # fmt: skip
            conn.execute(
                sa.text(
                    "insert into basic_four (atena_no, family_name, given_name, family_kana, given_kana, birth_date, sex,"
                    " postal_code, address, lg_code, change_kind, effective_on, recorded_at) values"
                    " (:a, '齋藤', '一', 'サイトウ', 'ハジメ', :b, '1', '1600023', '新宿区西新宿二丁目8番1号', '131041',"
                    " '登録', :b, :t)"
                ),
                {"a": make_atena_no(1), "b": date(1970, 1, 1), "t": now},
            )
        migrate(engine, SCHEMA.migrations, Base.metadata)
        with make_sessionmaker(engine)() as s:
            found = search.search(s, search.parse_criteria({"name": "斎藤", "address": "西新宿2-8-1"})).rows
            assert [f.atena_no for f in found] == [make_atena_no(1)]
    finally:
        engine.dispose()


def test_every_person_of_a_synthetic_ward_is_found_by_their_facts_typed_another_way(db_url: str) -> None:
    """The generator's people, typed as staff and old systems write them (hiragana or
    half-width kana, 旧字, another notation of the address, 和暦 in 全角): each search
    finds the person it was typed from."""
    import random

    from renkei.core.text.wareki import to_wareki
    from renkei.dummy import bulk as dummy_bulk
    from renkei.dummy import noise_address, noise_kana, noise_kanji
    from renkei.dummy.synth import SynthConfig, generate

    pop = generate(SynthConfig(seed=11, people=400, reference_date=date(2025, 4, 1), window_years=2))
    records = list(dummy_bulk.resident_records(pop, "131041"))
    engine, sessions = migrated(db_url, "atena")
    rng = random.Random(3)
    try:
        with sessions() as s:
            nos = service.register_parsed(s, FieldCipher.generate(), service.parse_residents(records), NOW).atena_nos
            s.commit()
        misses = []
        for i in rng.sample(range(len(records)), 60):
            r = records[i]
            kana = rng.choice((noise_kana.to_hiragana, noise_kana.to_halfwidth))(rng, r["family_kana"] + " " + r["given_kana"])
            name = noise_kanji.swap_kanji_variant(rng, r["family_name"]) + "　" + r["given_name"]
            address = noise_address.rewrite_notation(rng, r["address"]).split(" ")[0]
            born = to_wareki(date.fromisoformat(r["birth_date"])).translate(str.maketrans("0123456789", "０１２３４５６７８９"))
            with sessions() as s:
                for fields in ({"kana": kana, "birth_date": born}, {"name": name, "address": address}, {"kana": kana}):
                    found = search.search(s, search.parse_criteria(fields), page_size=1000).rows
                    if nos[i] not in {f.atena_no for f in found}:
                        misses.append((fields, r["family_kana"], r["family_name"], r["address"]))
        assert misses == []
    finally:
        engine.dispose()


def test_former_residents_are_searchable_by_their_status(db: Db) -> None:
    """A move-out (転出) keeps the person as a former resident (除票) at the new address."""
    from dataclasses import replace

    moved = service.parse_residents([PEOPLE[2] | {"address": "東京都中野区中央一丁目1番1号", "lg_code": "131148"}])
    moved = [replace(moved[0], status="former", reason="転出", effective_on=date(2026, 3, 1))]
    with db.sessions() as s:
        service.register_parsed(s, db.cipher, moved, NOW)
        s.commit()
    assert db.names(name="渡辺", residence="former") == {"渡邉健"}
    assert db.names(name="渡辺", residence="resident") == set()
    assert db.names(address="中野区中央1") == {"渡邉健"}
    assert db.names(address="西新宿2-80") == set()  # the former address, not current …
    assert db.names(address="西新宿2-80", history="1") == {"渡邉健"}  # … but in the history


def test_a_non_resident_numbered_by_staff_is_searchable_at_once(db: Db) -> None:
    from renkei.atena import non_residents

    basic4 = non_residents.parse_basic_four(
        {"family_name": "齋藤", "given_name": "三郎", "family_kana": "サイトウ", "given_kana": "サブロウ",
         "birth_date": "1960-02-02", "sex": "1", "postal_code": "2210001", "lg_code": "141003",
         "address": "神奈川県横浜市神奈川区西寺尾一丁目2番3号"}
    )  # fmt: skip
    with db.sessions() as s:
        ack = non_residents.acknowledgement(db.cipher, basic4, non_residents.candidates(s, basic4))
        done = non_residents.register(s, db.cipher, basic4, ack=ack, choice="new", now=NOW)
        s.commit()
    with db.sessions() as s:
        found = search.search(s, search.parse_criteria({"name": "斎藤", "address": "横浜市神奈川区西寺尾1"})).rows
    assert [(f.atena_no, f.residence) for f in found] == [(done.atena_no, "non_resident")]
