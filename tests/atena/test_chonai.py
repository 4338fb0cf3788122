"""庁内連携 through atena under 新宿区's sample ordinance, on both backends.

The tax department (system ``tax``) publishes 地方税関係情報 under its own 宛名番号; the
childcare (``kodomo``) and school-aid (``shugaku``) departments read it with theirs, each
only the items its entry of the ordinance's table names. What is checked: an allowed read
answers with the reader's numbers only and is audited per person; what the table does not
list is refused (403 problem+json, stable code) with nothing written but the refusal's
audit entry; scopes are enforced; the CSV route round-trips in UTF-8 and CP932.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from renkei.atena.models import ChonaiRecord
from renkei.atena.models import oauth as oauth_t
from renkei.atena.service import translate_all
from renkei.core import ids
from renkei.core.db import transaction
from renkei.staff.oauth import register_client
from tests.api.fed import Federation, assert_problem, unchanged
from tests.atena.kit import AtenaKit, open_atena
from tests.atena.test_auth_api import person
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database

TAX_INFO = "TM00000000000002"
WELFARE_INFO = "TM00000000009004"
KODOMO_AFFAIR = "JM13104100000001"  # 子ども・子育て支援 (entry T1-01: K001 K002 K003 K004 K006)
SHUGAKU_AFFAIR = "JM13104100000002"  # 就学援助 (entry T1-02: K001 K002 K003)
PEOPLE = 5  # person 4 is known to everybody but the tax department published nothing for them

# (client, system, scopes)
CHONAI_CLIENTS = [
    ("tax-chonai", "tax", ["tax:chonai:publish"]),
    ("kodomo-app", "kodomo", ["kodomo:chonai:read"]),
    ("shugaku-app", "shugaku", ["shugaku:chonai:read"]),
    ("kodomo-other", "kodomo", ["kodomo:fukuhon:register"]),  # no chonai scope
]
PUBLISH = ("tax-chonai", "tax:chonai:publish")
KODOMO = ("kodomo-app", "kodomo:chonai:read")
SHUGAKU = ("shugaku-app", "shugaku:chonai:read")


def tax_no(i: int) -> str:
    return ids.make_atena_no(740_000 + i)


def kodomo_no(i: int) -> str:
    return ids.make_atena_no(750_000 + i)


def shugaku_no(i: int) -> str:
    return ids.make_atena_no(760_000 + i)


UNLINKED = ids.make_atena_no(759_999)


def tax_values(i: int) -> dict[str, str]:
    return {"K001": "2024", "K002": "1", "K003": str(3_000_000 + i), "K004": str(120_000 + i), "K006": str(i % 3)}


@dataclass
class World:
    atena: AtenaKit
    atena_nos: list[str]

    def get(self, client: tuple[str, str], **params: str) -> httpx.Response:
        return self.atena.client.get("/v1/chonai/records", params=params, headers=self.atena.bearer(*client))

    def post(self, path: str, client: tuple[str, str], body: Any) -> httpx.Response:
        return self.atena.client.post(path, json=body, headers=self.atena.bearer(*client))

    def read_params(self, i: int = 0, **over: str) -> dict[str, str]:
        params = {
            "system": "kodomo",
            "affair_code": KODOMO_AFFAIR,
            "provider_system": "tax",
            "info_kind_code": TAX_INFO,
            "business_atena_no": kodomo_no(i),
            "as_of": "令和7年4月1日",
        }
        params.update(over)
        return params

    def audit_since(self, seq: int) -> list[dict[str, Any]]:
        return [e for e in self.atena.audit() if e["seq"] > seq]

    def last_seq(self) -> int:
        return int(self.atena.audit()[-1]["seq"])


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, fed: Federation) -> Iterator[World]:
    url = create_pg_database() if request.param == "postgresql" else None
    try:
        with open_atena(fed, database_url=url) as a:
            assert a.app.state.rt.engine.dialect.name == request.param
            assert a.app.state.ordinance is not None and a.app.state.ordinance.lg_code == "131041"
            rt = a.app.state.rt
            with transaction(rt.sessions) as s:
                for client_id, system, scopes in CHONAI_CLIENTS:
                    secret = register_client(
                        s, oauth_t, a.app.state.cipher, client_id=client_id, system_id=system,
                        name=f"{system}（架空）", allowed_scopes=scopes, now=a.clock(),
                    )  # fmt: skip
                    a.credentials["clients"][client_id] = {"secret": secret}
            persons = [
                person(700 + i, business_numbers={"tax": tax_no(i), "kodomo": kodomo_no(i), "shugaku": shugaku_no(i)})
                for i in range(PEOPLE)
            ]
            r = a.post("/v1/residents", {"persons": persons})
            assert r.status_code == 200, r.text
            # A business system gets its own numbers back: atena's, by the links.
            with a.app.state.rt.sessions() as s:
                atena_nos = translate_all(s, "tax", [tax_no(i) for i in range(PEOPLE)])
            w = World(a, atena_nos)
            records = [
                {"business_atena_no": tax_no(i), "record_key": "2024", "values": tax_values(i)} for i in range(PEOPLE - 1)
            ]
            r = w.post("/v1/chonai/publications", PUBLISH, {"system": "tax", "info_kind_code": TAX_INFO, "records": records})
            assert r.status_code == 200, r.text
            assert r.json() == {"added": PEOPLE - 1, "replaced": 0, "withdrawn": 0, "unchanged": 0}
            yield w
    finally:
        if url is not None:
            drop_pg_database(url)


def _no_foreign_numbers(w: World, text: str) -> None:
    """A reader's answer never carries a 統合宛名番号 nor the provider's numbers."""
    for i in range(PEOPLE):
        assert w.atena_nos[i] not in text
        assert tax_no(i) not in text


# --- publishing -------------------------------------------------------------------------------


def test_publication_is_stored_sealed_under_the_atena_no(world: World) -> None:
    with world.atena.app.state.rt.sessions() as s:
        rows = s.execute(select(ChonaiRecord.atena_no, ChonaiRecord.values_enc)).all()
    assert {r.atena_no for r in rows} == set(world.atena_nos[: PEOPLE - 1])
    for _no, blob in rows:
        assert b"3000000" not in blob and b"K003" not in blob  # the items are sealed


def test_same_publication_twice_changes_nothing_and_a_change_replaces(world: World) -> None:
    body = {"system": "tax", "info_kind_code": TAX_INFO, "records": [
        {"business_atena_no": tax_no(0), "record_key": "2024", "values": tax_values(0)}]}  # fmt: skip
    r = world.post("/v1/chonai/publications", PUBLISH, body)
    assert r.json() == {"added": 0, "replaced": 0, "withdrawn": 0, "unchanged": 1}
    body["records"][0]["values"] = {**tax_values(0), "K006": "2"}
    assert world.post("/v1/chonai/publications", PUBLISH, body).json()["replaced"] == 1
    got = world.get(KODOMO, **world.read_params(0)).json()
    assert got["records"][0]["values"]["K006"] == "2"
    body["records"][0]["values"] = tax_values(0)  # back as it was, for the other tests
    assert world.post("/v1/chonai/publications", PUBLISH, body).json()["replaced"] == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        # 均等割額 (K005) is in the layout but no entry of the table shares it
        ({"system": "tax", "info_kind_code": TAX_INFO, "records": [
            {"business_atena_no": tax_no(1), "record_key": "2024", "values": {**tax_values(1), "K005": "5000"}}]},
         422, "item_not_shared"),
        # the tax department's 生活保護関係情報: no entry reads it from tax
        ({"system": "tax", "info_kind_code": WELFARE_INFO, "records": [
            {"business_atena_no": tax_no(1), "values": {"S001": "1"}}]}, 403, "ordinance_not_provided"),
        ({"system": "tax", "info_kind_code": TAX_INFO, "records": [
            {"business_atena_no": tax_no(1), "values": {"K002": "9"}}]}, 422, "bad_values"),
        ({"system": "tax", "info_kind_code": TAX_INFO, "records": [
            {"business_atena_no": UNLINKED, "values": {"K001": "2024"}}]}, 404, "unknown_business_atena_no"),
    ],
)  # fmt: skip
def test_a_bad_publication_writes_nothing(world: World, body: dict[str, Any], status: int, code: str) -> None:
    headers = world.atena.bearer(*PUBLISH)
    before = world.atena.counts()
    seq = world.last_seq()
    problem = assert_problem(world.atena.client.post("/v1/chonai/publications", json=body, headers=headers), status, code)
    assert problem["title"]
    unchanged(before, world.atena.counts())
    (entry,) = world.audit_since(seq)
    assert (entry["action"], entry["outcome"], entry["actor"]) == ("chonai.publish", code, "tax-chonai")


# --- reading ------------------------------------------------------------------------------------


def test_allowed_read_answers_with_the_readers_numbers_and_the_entrys_items(world: World) -> None:
    seq = world.last_seq()
    before = world.atena.counts()
    r = world.get(KODOMO, **world.read_params(2))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["business_atena_no"] == kodomo_no(2) and body["status"] == "found"
    assert body["entry"]["id"] == "T1-01" and body["as_of"] == "2025-04-01"
    (record,) = body["records"]
    assert record["record_key"] == "2024"
    assert record["values"] == tax_values(2)  # every item of T1-01
    _no_foreign_numbers(world, r.text)
    # Logged: who, which affair, which entry, which person; no value read.
    after = world.audit_since(seq)
    person_entry, request_entry = after
    assert person_entry["action"] == "chonai.read.person" and person_entry["outcome"] == "found"
    assert person_entry["subject"] == world.atena_nos[2]
    assert person_entry["actor"] == "kodomo-app"
    assert person_entry["affair"] == KODOMO_AFFAIR and person_entry["ref"] == "T1-01"
    assert person_entry["detail"]["provider"] == "tax" and person_entry["detail"]["request"] == body["request_id"]
    assert request_entry["action"] == "chonai.read" and request_entry["detail"]["found"] == 1
    assert "3000002" not in str(after)
    unchanged(before, world.atena.counts())  # a read writes only its audit entries


def test_each_affair_sees_only_its_entrys_items(world: World) -> None:
    r = world.get(SHUGAKU, **world.read_params(1, system="shugaku", affair_code=SHUGAKU_AFFAIR,
                                                 business_atena_no=shugaku_no(1)))  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["entry"]["id"] == "T1-02"
    assert r.json()["records"][0]["values"] == {"K001": "2024", "K002": "1", "K003": "3000001"}


def test_batch_read_translates_each_number_both_ways(world: World) -> None:
    numbers = [kodomo_no(0), UNLINKED, kodomo_no(4), "12345", kodomo_no(3)]
    body = {"system": "kodomo", "affair_code": KODOMO_AFFAIR, "provider_system": "tax", "info_kind_code": TAX_INFO,
            "business_atena_nos": numbers}  # fmt: skip
    seq = world.last_seq()
    r = world.post("/v1/chonai/reads", KODOMO, body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert [p["business_atena_no"] for p in out["results"]] == numbers
    assert [p["status"] for p in out["results"]] == ["found", "unknown", "no_data", "invalid", "found"]
    assert out["results"][4]["records"][0]["values"]["K003"] == "3000003"
    assert out["counts"] == {"found": 2, "no_data": 1, "unknown": 1, "invalid": 1}
    _no_foreign_numbers(world, r.text)
    subjects = [e["subject"] for e in world.audit_since(seq) if e["action"] == "chonai.read.person"]
    assert subjects == [world.atena_nos[0], world.atena_nos[4], world.atena_nos[3]]


def test_single_read_of_an_unknown_number_is_404_and_audited(world: World) -> None:
    seq = world.last_seq()
    assert_problem(world.get(KODOMO, **world.read_params(business_atena_no=UNLINKED)), 404, "unknown_business_atena_no")
    (entry,) = world.audit_since(seq)
    assert (entry["action"], entry["outcome"], entry["subject"]) == ("chonai.read", "unknown_business_atena_no", None)


@pytest.mark.parametrize(
    ("client", "over", "code"),
    [
        # 就学援助 reading 生活保護関係情報 from welfare: not in the table
        (SHUGAKU, {"system": "shugaku", "affair_code": SHUGAKU_AFFAIR, "provider_system": "welfare",
                   "info_kind_code": WELFARE_INFO}, "ordinance_not_listed"),
        # 就学援助 reading the tax department's 住民票関係情報: no such entry either
        (SHUGAKU, {"system": "shugaku", "affair_code": SHUGAKU_AFFAIR, "info_kind_code": "TM00000000000001"},
         "ordinance_not_listed"),
        # 地方税 is not an affair the ordinance lets read anything
        (KODOMO, {"affair_code": "JM01000000016000"}, "ordinance_affair_not_listed"),
        # the school-aid system asking under the childcare affair
        (SHUGAKU, {"system": "shugaku", "business_atena_no": shugaku_no(0)}, "ordinance_system_not_for_affair"),
        # before the table was in force
        (KODOMO, {"as_of": "2015-12-31"}, "ordinance_not_in_force"),
    ],
)  # fmt: skip
def test_what_the_ordinance_does_not_list_is_refused_and_only_the_refusal_logged(
    world: World, client: tuple[str, str], over: dict[str, str], code: str
) -> None:
    headers = world.atena.bearer(*client)
    before = world.atena.counts()
    seq = world.last_seq()
    resp = world.atena.client.get("/v1/chonai/records", params=world.read_params(0, **over), headers=headers)
    problem = assert_problem(resp, 403, code)
    assert "条例" in problem["title"] or "期間" in problem["title"]
    assert "3000000" not in resp.text
    unchanged(before, world.atena.counts())
    (entry,) = world.audit_since(seq)
    assert (entry["action"], entry["outcome"], entry["actor"]) == ("chonai.read", code, client[0])
    assert entry["subject"] is None and entry["affair"] == world.read_params(0, **over)["affair_code"]


def test_a_value_that_could_be_an_individual_number_is_not_logged(world: World) -> None:
    headers = world.atena.bearer(*KODOMO)
    seq = world.last_seq()
    resp = world.atena.client.get(
        "/v1/chonai/records", params=world.read_params(0, provider_system="123456789018"), headers=headers
    )
    assert_problem(resp, 403, "ordinance_not_listed")
    (entry,) = world.audit_since(seq)
    assert entry["detail"]["provider"] == "(形式誤り)" and "123456789018" not in str(entry)
    # as the system: no token's scope, and the refusal's entry does not name it either
    seq = world.last_seq()
    resp = world.atena.client.get("/v1/chonai/records", params=world.read_params(0, system="123456789018"), headers=headers)
    assert_problem(resp, 403, "insufficient_scope")
    (entry,) = world.audit_since(seq)
    assert "123456789018" not in str(entry)


def test_scope_is_enforced(world: World) -> None:
    other, reader = world.atena.bearer("kodomo-other", "kodomo:fukuhon:register"), world.atena.bearer(*KODOMO)
    before = world.atena.counts()  # tokens issued: the refusals below write nothing
    # a kodomo client without kodomo:chonai:read
    resp = world.atena.client.get("/v1/chonai/records", params=world.read_params(0), headers=other)
    assert_problem(resp, 403, "insufficient_scope")
    # the childcare client reading as the school-aid system
    resp = world.atena.client.get(
        "/v1/chonai/records",
        params=world.read_params(0, system="shugaku", affair_code=SHUGAKU_AFFAIR, business_atena_no=shugaku_no(0)),
        headers=reader,
    )
    assert_problem(resp, 403, "insufficient_scope")
    # a reader cannot publish
    body = {"system": "kodomo", "info_kind_code": TAX_INFO, "records": [{"business_atena_no": kodomo_no(0), "values": {}}]}
    assert_problem(world.atena.client.post("/v1/chonai/publications", json=body, headers=reader),
                   403, "insufficient_scope")  # fmt: skip
    # no token at all
    assert_problem(world.atena.client.get("/v1/chonai/records", params=world.read_params(0)), 401, "authentication_required")
    unchanged(before, world.atena.counts())


# --- CSV ------------------------------------------------------------------------------------------


def _csv_params(**over: str) -> dict[str, str]:
    params = {"system": "kodomo", "affair_code": KODOMO_AFFAIR, "provider_system": "tax", "info_kind_code": TAX_INFO}
    params.update(over)
    return params


@pytest.mark.parametrize("encoding", ["utf-8", "cp932"])
def test_csv_round_trip(world: World, encoding: str) -> None:
    numbers = [kodomo_no(1), kodomo_no(4), UNLINKED, kodomo_no(0)]
    request_file = ("宛名番号\r\n" + "\r\n".join(numbers) + "\r\n").encode(encoding)
    seq = world.last_seq()
    resp = world.atena.client.post(
        "/v1/chonai/reads.csv", params=_csv_params(), content=request_file,
        headers={**world.atena.bearer(*KODOMO), "content-type": "text/csv"},
    )  # fmt: skip
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    text = resp.content.decode(encoding)
    assert "\r\n" in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["宛名番号", "状態", "状態の説明", "レコードキー", "K001（課税年度）", "K002（課税区分）",
                       "K003（総所得金額等）", "K004（市町村民税所得割額）", "K006（扶養親族数）"]  # fmt: skip
    assert [r[0] for r in rows[1:]] == numbers
    assert [r[1] for r in rows[1:]] == ["found", "no_data", "unknown", "found"]
    assert rows[1][3:] == ["2024", "2024", "1", "3000001", "120001", "1"]
    assert rows[2][2] == "該当なし（提供元の公開データがありません）" and rows[2][4:] == [""] * 5
    _no_foreign_numbers(world, text)
    persons = [e["subject"] for e in world.audit_since(seq) if e["action"] == "chonai.read.person"]
    assert persons == [world.atena_nos[1], world.atena_nos[4], world.atena_nos[0]]


def test_csv_with_a_bad_line_is_refused_naming_the_line(world: World) -> None:
    bad = f"宛名番号\n{kodomo_no(1)}\n123\n".encode()
    before = world.atena.counts()
    resp = world.atena.client.post(
        "/v1/chonai/reads.csv", params=_csv_params(), content=bad,
        headers={**world.atena.bearer(*KODOMO), "content-type": "text/csv"},
    )  # fmt: skip
    problem = assert_problem(resp, 422, "bad_record")
    assert "3 行目" in problem["title"]
    unchanged(before, world.atena.counts())


def test_csv_of_an_unlisted_read_is_refused(world: World) -> None:
    resp = world.atena.client.post(
        "/v1/chonai/reads.csv", params=_csv_params(provider_system="welfare", info_kind_code=WELFARE_INFO),
        content=f"宛名番号\n{kodomo_no(1)}\n".encode(),
        headers={**world.atena.bearer(*KODOMO), "content-type": "text/csv"},
    )  # fmt: skip
    assert_problem(resp, 403, "ordinance_not_listed")


# --- random input never 5xx ------------------------------------------------------------------------

FUZZ = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
_TEXT = st.text(max_size=20) | st.sampled_from(
    ["kodomo", "tax", KODOMO_AFFAIR, TAX_INFO, "令和7年4月1日", "R7.4.1", "123456789018", "1234 5678 9018"]
)  # the last two: a valid 個人番号, which the audit log refuses to hold
_VALUE = st.none() | st.booleans() | st.integers() | _TEXT | st.lists(_TEXT, max_size=3) | st.dictionaries(_TEXT, _TEXT, max_size=3)
_KEYS = ["system", "affair_code", "provider_system", "info_kind_code", "business_atena_nos", "as_of", "records",
         "business_atena_no", "record_key", "values", "delete"]  # fmt: skip


def _fine(resp: httpx.Response, what: str) -> None:
    assert resp.status_code < 500, (what, resp.status_code, resp.text[:300])
    if resp.status_code >= 400:
        assert resp.headers["content-type"].startswith("application/problem+json"), what
        assert resp.json()["code"] and resp.json()["title"], what


def test_random_bodies_and_parameters_never_5xx(world: World) -> None:
    read, publish = world.atena.bearer(*KODOMO), world.atena.bearer(*PUBLISH)
    valid_read = {"system": "kodomo", "affair_code": KODOMO_AFFAIR, "provider_system": "tax", "info_kind_code": TAX_INFO,
                  "business_atena_nos": [kodomo_no(0)]}  # fmt: skip
    # An unlinked number: every check but the last runs, and nothing is ever stored.
    valid_pub = {"system": "tax", "info_kind_code": TAX_INFO,
                 "records": [{"business_atena_no": tax_no(9_999), "record_key": "2024", "values": tax_values(0)}]}  # fmt: skip

    @FUZZ
    @given(key=st.sampled_from(_KEYS), value=_VALUE, data=st.binary(max_size=200))
    def run(key: str, value: Any, data: bytes) -> None:
        body = {**valid_read, key: value}
        _fine(world.atena.client.post("/v1/chonai/reads", json=body, headers=read), f"reads {key}={value!r}")
        pub = {**valid_pub, "records": [{**valid_pub["records"][0], key: value}]}  # type: ignore[dict-item]
        _fine(world.atena.client.post("/v1/chonai/publications", json=pub, headers=publish), f"pub {key}={value!r}")
        params = {k: v for k, v in valid_read.items() if isinstance(v, str)}
        if isinstance(value, str):
            params[key] = value
        _fine(world.atena.client.post("/v1/chonai/reads.csv", params=params, content=data,
                                      headers={**read, "content-type": "text/csv"}), f"csv {data!r}")  # fmt: skip
        _fine(world.atena.client.get("/v1/chonai/records", params={**params, "business_atena_no": str(value)},
                                     headers=read), f"get {value!r}")  # fmt: skip

    before = world.atena.counts()
    run()
    unchanged(before, world.atena.counts())


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture
def cli(world: World, fed: Federation, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`renkei …` on the world's atena: its config file, its database (PostgreSQL too)."""
    from typer.testing import CliRunner

    from renkei.cli import app
    from renkei.federation.topology import SHINJUKU

    monkeypatch.setenv("RENKEI_NODE_DATABASE_URL", world.atena.app.state.rt.config.database_url)
    config = str(fed.layout.config_path(SHINJUKU, "atena"))
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, [*args, "--config", config])

    return run


def test_cli_export_answers_a_request_file_and_logs_it(world: World, cli: Any, tmp_path: Path) -> None:
    request_file, out = tmp_path / "依頼.csv", tmp_path / "結果.csv"
    request_file.write_bytes(f"宛名番号\r\n{shugaku_no(3)}\r\n{shugaku_no(4)}\r\n".encode("cp932"))
    seq = world.last_seq()
    result = cli("chonai", "export", str(request_file), "--system", "shugaku", "--affair", SHUGAKU_AFFAIR,
                 "--provider", "tax", "--info-kind", TAX_INFO, "--out", str(out), "--as-of", "R7.4.1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "該当あり 1 人、該当なし 1 人" in result.output
    rows = list(csv.reader(io.StringIO(out.read_bytes().decode("cp932"))))
    assert rows[0][4:] == ["K001（課税年度）", "K002（課税区分）", "K003（総所得金額等）"]
    assert rows[1] == [shugaku_no(3), "found", "該当あり", "2024", "2024", "1", "3000003"]
    assert rows[2][:2] == [shugaku_no(4), "no_data"]
    logged = world.audit_since(seq)
    assert [(e["action"], e["subject"], e["actor"][:4]) for e in logged] == [
        ("chonai.read.person", world.atena_nos[3], "cli:"),
        ("chonai.read.person", world.atena_nos[4], "cli:"),
        ("chonai.read", None, "cli:"),
    ]
    assert logged[0]["affair"] == SHUGAKU_AFFAIR and logged[0]["ref"] == "T1-02"


def test_cli_export_refused_by_the_ordinance_writes_no_file(world: World, cli: Any, tmp_path: Path) -> None:
    request_file, out = tmp_path / "依頼.csv", tmp_path / "結果.csv"
    request_file.write_text(f"宛名番号\n{shugaku_no(3)}\n", encoding="utf-8")
    before = world.atena.counts()
    result = cli("chonai", "export", str(request_file), "--system", "shugaku", "--affair", SHUGAKU_AFFAIR,
                 "--provider", "welfare", "--info-kind", WELFARE_INFO, "--out", str(out))  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "条例" in result.output and not out.exists()
    unchanged(before, world.atena.counts())
    assert world.atena.audit()[-1]["outcome"] == "ordinance_not_listed"


def test_cli_publish_names_the_bad_line(world: World, cli: Any, tmp_path: Path) -> None:
    file = tmp_path / "tax.csv"
    file.write_text(
        "宛名番号,レコードキー,K001,K002,K003\n"
        f"{tax_no(4)},2023,2023,1,2500000\n"
        f"{tax_no(3)},2023,2023,7,1\n",  # 課税区分 7: not in the code list
        encoding="utf-8",
    )
    before = world.atena.counts()
    result = cli("chonai", "publish", str(file), "--system", "tax", "--info-kind", TAX_INFO)
    assert result.exit_code == 1, result.output
    assert "tax.csv の 3 行目" in result.output and "K002" in result.output
    unchanged(before, world.atena.counts())
    # Fixed, it goes in whole; the person who had no data now has a record for 2023.
    file.write_text(file.read_text(encoding="utf-8").replace(",7,1", ",2,0"), encoding="utf-8")
    result = cli("chonai", "publish", str(file), "--system", "tax", "--info-kind", TAX_INFO)
    assert result.exit_code == 0, result.output and "追加 2 件" in result.output
    got = world.get(KODOMO, **world.read_params(4)).json()
    assert got["status"] == "found" and got["records"][0]["values"] == {"K001": "2023", "K002": "1", "K003": "2500000"}
    # withdrawn again: person 4 has no data, as the other tests expect
    file.write_text(f"宛名番号,レコードキー,削除\n{tax_no(4)},2023,1\n{tax_no(3)},2023,1\n", encoding="utf-8")
    result = cli("chonai", "publish", str(file), "--system", "tax", "--info-kind", TAX_INFO)
    assert result.exit_code == 0 and "削除 2 件" in result.output, result.output
    assert world.get(KODOMO, **world.read_params(4)).json()["status"] == "no_data"


# --- scale --------------------------------------------------------------------------------------

SCALE = 10_000  # one request's and one file's limit


@pytest.mark.slow
def test_ten_thousand_persons_by_file(world: World) -> None:
    """Publish 10,000 tax records and read them back as one CSV; prints the times."""
    import time

    base = 20_000
    persons = [
        person(base + i, business_numbers={"tax": ids.make_atena_no(800_000 + i), "kodomo": ids.make_atena_no(820_000 + i)})
        for i in range(SCALE)
    ]
    r = world.atena.post("/v1/residents", {"persons": persons})
    assert r.status_code == 200, r.text
    records = [
        {"business_atena_no": ids.make_atena_no(800_000 + i), "record_key": "2024", "values": tax_values(i)}
        for i in range(SCALE)
    ]
    headers = world.atena.bearer(*PUBLISH)
    t0 = time.perf_counter()
    r = world.atena.client.post(
        "/v1/chonai/publications", json={"system": "tax", "info_kind_code": TAX_INFO, "records": records}, headers=headers
    )
    published = time.perf_counter() - t0
    assert r.status_code == 200 and r.json()["added"] == SCALE, r.text
    numbers = [ids.make_atena_no(820_000 + i) for i in range(SCALE)]
    request_file = ("宛名番号\r\n" + "\r\n".join(numbers) + "\r\n").encode()
    headers = {**world.atena.bearer(*KODOMO), "content-type": "text/csv"}
    t0 = time.perf_counter()
    resp = world.atena.client.post("/v1/chonai/reads.csv", params=_csv_params(), content=request_file, headers=headers)
    read = time.perf_counter() - t0
    assert resp.status_code == 200, resp.text
    rows = list(csv.reader(io.StringIO(resp.content.decode())))
    assert len(rows) == SCALE + 1 and all(row[1] == "found" for row in rows[1:])
    dialect = world.atena.app.state.rt.engine.dialect.name
    print(f"\n庁内連携 {dialect}: 公開 {SCALE:,} 件 {published:.2f} 秒、CSV 取得 {SCALE:,} 人 {read:.2f} 秒")


def test_cli_export_for_a_staff_member_needs_the_affairs_read_role(world: World, cli: Any, tmp_path: Path) -> None:
    from sqlalchemy import update

    from renkei.atena.models import auth as auth_t

    request_file, out = tmp_path / "依頼.csv", tmp_path / "結果.csv"
    request_file.write_text(f"宛名番号\n{shugaku_no(1)}\n", encoding="utf-8")
    args = ("chonai", "export", str(request_file), "--system", "shugaku", "--affair", SHUGAKU_AFFAIR,
            "--provider", "tax", "--info-kind", TAX_INFO, "--out", str(out), "--actor", "S0007")  # fmt: skip
    before = world.atena.counts()
    result = cli(*args)  # S0007 holds 宛名:参照 only
    assert result.exit_code == 1 and "参照権限" in result.output, result.output
    assert not out.exists()
    unchanged(before, world.atena.counts())
    refused = world.atena.audit()[-1]
    assert (refused["actor"], refused["outcome"]) == ("S0007", "affair_not_permitted")
    assert refused["terminal"].startswith("cli:")
    with transaction(world.atena.app.state.rt.sessions) as s:
        s.execute(
            update(auth_t.staff).where(auth_t.staff.c.staff_id == "S0007")
            .values(roles=["宛名:参照", f"{SHUGAKU_AFFAIR}:参照"])
        )  # fmt: skip
    try:
        seq = world.last_seq()
        result = cli(*args)
        assert result.exit_code == 0, result.output
        person_entry = world.audit_since(seq)[0]
        assert (person_entry["actor"], person_entry["subject"]) == ("S0007", world.atena_nos[1])
        assert person_entry["affair"] == SHUGAKU_AFFAIR and person_entry["terminal"].startswith("cli:")
    finally:
        with transaction(world.atena.app.state.rt.sessions) as s:
            s.execute(update(auth_t.staff).where(auth_t.staff.c.staff_id == "S0007").values(roles=["宛名:参照"]))
