"""J-LIS's identity search on 基本4情報 (`identity.search`): one match gives the individual
number, none or several give a clear Japanese answer and no number; the 基本4情報 are
sealed at rest; a pairs file carries them (`renkei jlis import pairs`). Both backends."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from renkei.core import ids
from renkei.core.config import NodeConfig, load_config
from renkei.core.crypto.field import FieldCipher
from renkei.core.db import make_engine
from renkei.core.errors import Problem
from renkei.core.wire import contract
from renkei.jlis import service
from renkei.jlis.imports import import_pairs
from renkei.jlis.models import Citizen
from renkei.staff.admin import node_cipher
from tests.import_kit import configs, write_jsonl
from tests.jlis.conftest import NOW

RNG = random.Random(20261206)
CIPHER = FieldCipher.generate()
AFFAIR = "JM01000000074000"


def who(**over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "family_name": "早稲田",
        "given_name": "花",
        "family_kana": "ワセダ",
        "given_kana": "ハナ",
        "birth_date": "1988-08-08",
        "sex": "2",
        "address": "東京都新宿区早稲田町1番地",
    }
    rec.update(over)
    return rec


def query(**over: Any) -> contract.IdentitySearch:
    body = {"affair_code": AFFAIR, **{k: v for k, v in who().items() if k in
            ("family_name", "given_name", "birth_date", "sex", "address")}}  # fmt: skip
    body.update(over)
    return contract.parse(contract.IdentitySearch, body)


def load(session: Session, people: list[dict[str, Any]]) -> list[str]:
    rows = [(ids.generate_individual_number(RNG), ids.generate_resident_code(RNG), "131041") for _ in people]
    identities = service.parse_identities(people)
    assert service.load_pairs(session, CIPHER, rows, NOW, identities) == len(rows)
    return [number for number, _, _ in rows]


def test_one_match_gives_the_number_none_or_several_give_none(session: Session) -> None:
    numbers = load(session, [who(), who(given_name="葉", given_kana="ヨウ"), who(family_name="戸塚", sex="1"),
                             who(family_name="戸塚", sex="1")])  # fmt: skip
    found = service.search_identity(session, CIPHER, query())
    assert (found.status, found.matches, found.individual_number) == ("found", 1, numbers[0])
    # Width and spaces in the name and address do not matter.
    spaced = service.search_identity(session, CIPHER, query(family_name="早稲田　", address="新宿区早稲田町一番地"))
    assert spaced.individual_number == numbers[0]
    # Another address, another birth date: nobody — said in Japanese, no number.
    for other in (query(address="東京都新宿区早稲田町2番地"), query(birth_date="1988-08-09")):
        answer = service.search_identity(session, CIPHER, other)
        assert (answer.status, answer.individual_number) == ("not_found", None)
        assert "該当する本人確認情報がありません" in answer.message
    # Two people with the same 基本4情報: not a guess.
    twins = service.search_identity(session, CIPHER, query(family_name="戸塚", sex="1"))
    assert (twins.status, twins.matches, twins.individual_number) == ("multiple", 2, None)
    assert "2名" in twins.message and "特定できません" in twins.message


def test_identities_are_sealed_at_rest(session: Session) -> None:
    load(session, [who(family_name="秘匿", address="東京都新宿区秘匿町9番地")])
    stored = str(session.execute(select(Citizen.__table__)).all())
    assert "秘匿" not in stored and "1988-08-08" not in stored
    # A pair without 基本4情報 cannot be found by them, and is stored without.
    row = (ids.generate_individual_number(RNG), ids.generate_resident_code(RNG), "131041")
    assert service.load_pairs(session, CIPHER, [row], NOW, [None]) == 1
    assert session.get(Citizen, row[1]).identity_enc is None  # type: ignore[union-attr]


def test_partial_identity_is_refused_naming_the_record() -> None:
    with pytest.raises(Problem) as exc:
        service.parse_identities([{}, {**who(), "address": ""}])
    assert (exc.value.code, exc.value.extra["index"]) == ("missing_field", 1)
    with pytest.raises(Problem) as bad:
        service.parse_identities([who(sex="x")])
    assert bad.value.code == "invalid_sex"


@pytest.mark.parametrize(
    ("over", "code"),
    [
        ({"affair_code": "JT01010000000214"}, "invalid_affair_code"),
        ({"family_name": ""}, "bad_identity_query"),
        ({"address": None}, "bad_identity_query"),
        ({"sex": "3"}, "bad_identity_query"),
        ({"birth_date": "昭和63年"}, "bad_date"),
    ],
)
def test_the_wire_contract_refuses_a_partial_query(over: dict[str, Any], code: str) -> None:
    body = {"affair_code": AFFAIR, "family_name": "早稲田", "given_name": "花", "birth_date": "1988-08-08",
            "sex": "2", "address": "東京都新宿区早稲田町1番地", **over}  # fmt: skip
    with pytest.raises(Problem) as exc:
        contract.parse(contract.IdentitySearch, body)
    assert exc.value.code == code


def test_the_message_pair_is_one_entry_of_the_contract() -> None:
    mt = contract.message_type("identity.search")
    assert mt is contract.IDENTITY_SEARCH
    assert (mt.receiver, mt.path, mt.senders, mt.reply_typ) == (
        "jlis", "/v1/identities/search", frozenset({"atena"}), "identity.found",
    )
    reply = contract.parse_reply(contract.IdentityFound, {"status": "not_found", "matches": 0, "message": "x"}, "u")
    assert reply.individual_number is None
    # Only atena may ask: chukan and hub are refused before any work.
    for sender in ("chukan", "hub"):
        with pytest.raises(Problem) as exc:
            contract.authorize(receiver="jlis", receiver_org="j", hub_org="h", typ="identity.search",
                               sender_org="o", sender_node=sender)  # fmt: skip
        assert exc.value.code == "sender_not_allowed"


@pytest.fixture
def node(tmp_path: Path, db_url: str, request: pytest.FixtureRequest) -> Any:
    _, jlis_cfg = configs(tmp_path, request.config._tmp_path_factory.getbasetemp(), db_url)  # type: ignore[attr-defined]
    engine = make_engine(db_url)
    yield jlis_cfg, load_config(jlis_cfg), engine
    engine.dispose()


def test_a_pairs_file_with_basic_four_is_searchable(node: tuple[Path, NodeConfig, Engine], tmp_path: Path) -> None:
    _config, cfg, engine = node
    number, code = ids.generate_individual_number(RNG), ids.generate_resident_code(RNG)
    rec = {"individual_number": number, "resident_code": code, "lg_code": "131041", **who()}
    path = write_jsonl(tmp_path / "pairs.jsonl", [rec])
    assert import_pairs(cfg, path).applied == 1
    with Session(engine) as s:
        found = service.search_identity(s, node_cipher(cfg), query())
    assert (found.status, found.individual_number) == ("found", number)
