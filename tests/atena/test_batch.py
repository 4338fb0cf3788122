"""一括照会 files (renkei.atena.batch) and the inquiry relay for business systems.

The request record's checks in every shape real clients send (comma / fixed width, UTF-8 /
CP932, CRLF / LF), bad records named by line and field, the 基準日 rules and the result
rows; then, with atena in-process and its chukan played (tests.atena.test_flows), on
SQLite and PostgreSQL: ``POST /v1/inquiries/batch`` and ``POST /v1/inquiries`` for a
business system — each record authorized by the system's scope for its affair, the
統合宛名番号 never returned, the inquirer fields passed on to the chukan, every record audited.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from renkei.atena import batch
from renkei.catalogue import load_catalogue
from renkei.core import ids
from renkei.core.errors import Problem
from renkei.core.text.layout import FileShape
from tests.api.fed import assert_problem, unchanged
from tests.atena import test_flows
from tests.atena.test_flows import Peers, World, last_audit

# The in-process atena with its chukan played, on each backend (fixtures of test_flows).
world = test_flows.world
peers = test_flows.peers

OWN = "1310410000000000"  # 新宿区
NAKANO = "1311480000000000"
CHILD_AFFAIR = "JM01000000074000"
CHILD_PROCEDURE = "JT01010000074001"
TAX_AFFAIR = "JM01000000016000"
TAX_PROCEDURE = "JT01010000016001"
TAX_INFO = "TM00000000000002"
CATALOGUE = load_catalogue()
TODAY = date(2026, 12, 6)
CTX = batch.Context(own_org=OWN, today=TODAY, system="child_allowance")
_VALID = ids.make_atena_no(830_009)
BAD_CHECK = _VALID[:-1] + str((int(_VALID[-1]) + 1) % 10)


def record(n: int = 1, **over: str) -> dict[str, str]:
    rec = {
        "number_system": "01",
        "business_atena_no": ids.make_atena_no(830_000 + n),
        "requested_at": "20261206093000123",
        "department": "KODOMO",
        "inquirer_org": OWN,
        "withheld": "0",
        "affair_code": CHILD_AFFAIR,
        "procedure_code": CHILD_PROCEDURE,
        "provider_org": NAKANO,
        "info_kind_code": TAX_INFO,
        "condition": "1",
        "start_date": "20240601",
    }
    rec.update(over)
    return rec


def file_bytes(records: list[dict[str, str]], shape: str = "comma", encoding: str = "ascii", newline: str = "\r\n") -> bytes:
    return "".join(line + newline for line in batch.request_lines(records, shape)).encode(encoding)  # type: ignore[arg-type]


def read(data: bytes, ctx: batch.Context = CTX, name: str = "P640R110_20261206093000_0001.DAT") -> tuple[FileShape, list[batch.BatchRecord]]:
    return batch.read_request(data, ctx, CATALOGUE, name)


# --- the request file ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["comma", "fixed"])
@pytest.mark.parametrize("encoding", ["utf-8", "cp932"])
@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_every_shape_gives_the_same_inquiries(shape: str, encoding: str, newline: str) -> None:
    # a department code is ASCII in the layout; the file may still be CP932 (ASCII is the same bytes)
    records = [record(1), record(2, department="", user_id="U77"), record(3, condition="", start_date="")]
    fs, got = read(file_bytes(records, shape, encoding, newline))
    assert (fs.shape, fs.newline) == (shape, newline)
    assert [r.error for r in got] == [None, None, None]
    reqs = [r.request for r in got]
    assert reqs[0] is not None and reqs[1] is not None and reqs[2] is not None
    assert (reqs[0].system, reqs[0].business_atena_no, reqs[0].atena_no) == ("child_allowance", ids.make_atena_no(830_001), None)
    assert (reqs[0].procedure_code, reqs[0].info_kind_code, reqs[0].provider_org) == (CHILD_PROCEDURE, TAX_INFO, NAKANO)
    assert (reqs[0].as_of, reqs[0].department, reqs[0].user_id) == ("2024-06-01", "KODOMO", None)
    assert (reqs[1].department, reqs[1].user_id) == (None, "U77")
    assert reqs[2].as_of == TODAY.isoformat()  # no condition, no dates: as of today
    assert [r.line for r in got] == [1, 2, 3]


def test_a_fixed_width_file_with_zero_filled_empty_numbers() -> None:
    """A fixed-width client may write an empty number as zeros: it is empty, not a person."""
    line = batch.request_lines([record(1)], "fixed")[0]
    # 統合宛名番号 (bytes 17–31) as zeros, the dates' empty end as zeros
    line = line[:17] + "0" * 15 + line[32:-8] + "00000000"
    (rec,) = read((line + "\r\n").encode())[1]
    assert rec.error is None and rec.request is not None
    assert rec.request.atena_no is None and rec.request.as_of == "2024-06-01"


@pytest.mark.parametrize(
    ("over", "field", "code", "reason"),
    [
        ({"number_system": "03"}, "番号体系", "bad_record", "01（業務宛名番号）か 02"),
        ({"business_atena_no": ""}, "宛名番号", "bad_record", "番号体系 01 では宛名番号"),
        ({"business_atena_no": BAD_CHECK}, "宛名番号", "invalid_business_atena_no", "チェックディジット"),
        ({"inquirer_org": NAKANO}, "照会者機関コード", "bad_record", "この団体の機関コード"),
        ({"affair_code": "JX01000000074000"}, "事務コード", "invalid_affair_code", "JM"),
        ({"affair_code": TAX_AFFAIR}, "事務コード", "bad_record", "事務は「JM01000000074000」"),
        ({"procedure_code": "JT09999999999999", "affair_code": CHILD_AFFAIR}, "事務手続コード", "unknown_procedure", "登録されていません"),
        ({"withheld": "9"}, "照会側不開示コード", "bad_record", "0（開示）か 1（不開示）"),
        ({"delegating_inquirer_org": "1311480000000000"}, "委任元照会者機関コード", "bad_record", "委任による照会"),
        ({"start_date": "20240231"}, "照会開始日", "bad_date", "日付（YYYYMMDD）"),
        ({"start_date": "20240601", "end_date": "20240501"}, "照会終了日", "bad_period", "照会開始日より前"),
        ({"condition": "3"}, "照会条件区分", "bad_record", "1（日付指定）か 2（年度指定）"),
        ({"condition": "2", "fiscal_year": "5"}, "照会年度区分", "bad_record", "0（当年度）か 1（前年度）"),
        ({"requested_at": "20261306093000123"}, "照会依頼日時", "bad_date", "17桁"),
        ({"info_kind_code": "TM0000000000002"}, "特定個人情報名コード", "invalid_info_kind_code", ""),
    ],
)
def test_a_bad_record_is_named_by_line_and_field_and_the_others_go_on(
    over: dict[str, str], field: str, code: str, reason: str
) -> None:
    _, got = read(file_bytes([record(1), record(2, **over), record(3)]), name="req.DAT")
    assert [r.error is None for r in got] == [True, False, True]
    err = got[1].error
    assert err is not None and got[1].request is None
    assert (err.code, err.extra["source"], err.extra["line"], err.extra["field"]) == (code, "req.DAT", 2, field)
    assert reason in err.title and err.title.startswith("req.DAT の 2 行目（項目「")


def test_layout_errors_of_a_record_are_its_result_not_the_files() -> None:
    good = batch.request_lines([record(1)])[0]
    data = (good + "\r\n" + good + ",extra\r\n" + good.replace("KODOMO", "子ども") + "\r\n").encode("utf-8")
    _, got = read(data)
    assert got[0].error is None
    assert got[1].error is not None and "項目の数が違います（18 項目のはずが 19 項目）" in got[1].error.title
    assert got[2].error is not None and got[2].error.extra["field"] == "照会者部署コード"
    assert "全角" in got[2].error.title


def test_a_business_system_may_not_name_or_see_the_atena_no() -> None:
    ctx = batch.Context(own_org=OWN, today=TODAY, system="child_allowance", atena_nos_allowed=False)
    _, got = read(file_bytes([record(1, atena_no=ids.make_atena_no(5)), record(2, number_system="02")]), ctx)
    assert [r.error.extra["field"] if r.error else None for r in got] == ["統合宛名番号", "番号体系"]


def test_staff_may_name_the_person_by_atena_no_and_need_a_system_for_business_numbers() -> None:
    ctx = batch.Context(own_org=OWN, today=TODAY, system=None)
    atena_no = ids.make_atena_no(5)
    _, got = read(file_bytes([record(1, number_system="02", business_atena_no="", atena_no=atena_no), record(2)]), ctx)
    assert got[0].request is not None and got[0].request.atena_no == atena_no and got[0].request.system is None
    assert got[1].error is not None and "--system" in got[1].error.title


def test_fiscal_year_condition_gives_the_end_of_that_year_or_today() -> None:
    _, got = read(file_bytes([
        record(1, condition="2", fiscal_year="0", start_date=""),
        record(2, condition="2", fiscal_year="1", start_date=""),
    ]))  # fmt: skip
    assert [r.request.as_of if r.request else None for r in got] == ["2026-12-06", "2026-03-31"]


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "レコードがありません"), (b"\r\n\r\n", "レコードがありません")],
)
def test_an_empty_file_is_refused_whole(data: bytes, message: str) -> None:
    with pytest.raises(Problem) as exc:
        read(data)
    assert exc.value.code == "bad_count" and message in exc.value.title


def test_more_than_ten_thousand_records_are_refused_whole() -> None:
    line = batch.request_lines([record(1)])[0].encode() + b"\r\n"
    with pytest.raises(Problem) as exc:
        read(line * (batch.MAX_RECORDS + 1))
    assert exc.value.code == "bad_count" and "10,000件ごとに" in exc.value.title
    assert len(read(line * batch.MAX_RECORDS)[1]) == batch.MAX_RECORDS


def test_request_file_names_split_every_ten_thousand_records() -> None:
    names = batch.request_file_names(datetime(2026, 12, 6, 9, 30), 20_001)
    assert names == [f"P640R110_20261206093000_000{i}.DAT" for i in (1, 2, 3)]
    assert batch.parse_request_name(names[1]) == (datetime(2026, 12, 6, 9, 30), 2)
    assert batch.parse_request_name("P640R110_20261306093000_0001.DAT") is None
    assert batch.result_file_name(names[0]) == "P640R110_20261206093000_0001_RESULT.csv"


# --- the result file -------------------------------------------------------------------------


def _rows(data: bytes, encoding: str = "utf-8") -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(encoding), newline="")))


def test_a_failed_row_carries_the_networks_message_and_code_in_cp932() -> None:
    _, (rec,) = read(file_bytes([record(1)]))
    problem = Problem(404, "provider_pseudonym_missing", "符号エラー（機関別符号未発行）", "情報提供者はこの人の符号を取得していません。", serial="20261206000000000001")
    out = io.BytesIO()
    batch.write_result(out, FileShape("cp932", False, "\r\n", "comma"), [batch.error_row(rec.values, problem)])
    (row,) = _rows(out.getvalue(), "cp932")
    assert row[:2] == ["01", ids.make_atena_no(830_001)] and row[2] == ""
    assert row[18:22] == ["99", "99", "20261206000000000001", "provider_pseudonym_missing"]
    assert row[22] == "符号エラー（機関別符号未発行）（情報提供者はこの人の符号を取得していません。）"
    assert out.getvalue().endswith(b"\r\n")


def test_an_unreadable_record_is_echoed_as_far_as_it_can_be() -> None:
    _, (rec,) = read(b"01,x\n")
    assert rec.values == {}
    out = io.BytesIO()
    assert rec.error is not None
    batch.write_result(out, FileShape("utf-8", False, "\n", "comma"), [batch.error_row(rec.values, rec.error)])
    (row,) = _rows(out.getvalue())
    assert row[:18] == [""] * 18 and row[21] == "bad_record" and "1 行目" in row[22]


# --- through atena, the chukan played --------------------------------------------------------

BATCH_SCOPE = f"child_allowance:inquiries.{CHILD_AFFAIR}:inquire"


def answer(serial: str, status: str = "answered") -> dict[str, Any]:
    out: dict[str, Any] = {"serial": serial, "status": status}
    if status == "answered":
        out.update(values={"K001": "2024", "K003": "3000000"}, edition="0001", record_key="2024")
    return out


def post_batch(world: World, data: bytes, **params: str) -> Any:
    headers = {**world.atena.bearer("kodomo-batch", BATCH_SCOPE), "Content-Type": "application/octet-stream"}
    query = {"system": "child_allowance", "name": "P640R110_20261206093000_0001.DAT", **params}
    return world.atena.client.post("/v1/inquiries/batch", content=data, headers=headers, params=query)


def test_a_business_systems_file_is_answered_record_by_record(world: World, peers: Peers) -> None:
    serials = iter(f"2026120600000000010{i}" for i in range(10))
    peers.answers["inquiry.start"] = lambda body: answer(next(serials), "answered" if body["atena_no"] == world.atena_nos[0] else "no_data")
    records = [
        record(0, user_id="U0001"),
        record(1),
        record(2, affair_code=TAX_AFFAIR, procedure_code=TAX_PROCEDURE),  # not this system's scope
        record(3, inquirer_org=NAKANO),  # malformed: never sent
    ]
    resp = post_batch(world, file_bytes(records, "fixed", newline="\n"))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    assert "P640R110_20261206093000_0001_RESULT.csv" in resp.headers["content-disposition"]
    assert (resp.headers["x-batch-records"], resp.headers["x-batch-errors"]) == ("4", "2")
    assert resp.content.count(b"\n") == 4 and b"\r\n" not in resp.content  # the request's line ends
    rows = _rows(resp.content)
    assert [r[18:20] for r in rows] == [["09", "01"], ["09", "02"], ["99", "99"], ["99", "99"]]
    assert all(r[2] == "" for r in rows)  # the 統合宛名番号 is never handed to a business system
    assert not any(n in resp.text for n in world.atena_nos)
    assert rows[0][23] == "0001" and rows[0][24:] == ["2024", "", "3000000"] + [""] * (len(rows[0]) - 27)
    assert rows[2][21] == "affair_not_permitted" and "この業務システムは" in rows[2][22]
    assert rows[3][21] == "bad_record" and "4 行目（項目「照会者機関コード」）" in rows[3][22]
    # Only the two permitted records reached the chukan, with who asked.
    sent = [body for _u, _a, typ, body in peers.sent if typ == "inquiry.start"]
    assert sorted((b["atena_no"], b.get("inquirer_department"), b.get("inquirer_user")) for b in sent) == [
        (world.atena_nos[0], "KODOMO", "U0001"),
        (world.atena_nos[1], "KODOMO", None),  # a business system is no user: none named
    ]
    # Every record audited, and the file.
    entries = world.atena.audit()[-5:]
    assert {e["actor"] for e in entries} == {"kodomo-batch"}
    assert [(e["action"], e["outcome"]) for e in (entries[0], entries[-1])] == [("inquiry", "bad_record"), ("inquiry.batch", "ok")]
    assert sorted((e["action"], e["outcome"]) for e in entries[1:4]) == [
        ("inquiry", "affair_not_permitted"), ("inquiry", "answered"), ("inquiry", "no_data"),
    ]  # fmt: skip
    assert entries[0]["detail"]["line"] == 4 and entries[0]["detail"]["field"] == "照会者機関コード"
    assert entries[-1]["detail"]["records"] == 4


def test_a_cp932_crlf_file_is_answered_in_cp932_crlf(world: World, peers: Peers) -> None:
    peers.answers["inquiry.start"] = lambda body: answer("20261206000000000201", "no_data")
    resp = post_batch(world, file_bytes([record(4), record(5, inquirer_org=NAKANO)], encoding="cp932"))
    assert resp.status_code == 200, resp.text
    # ASCII requests are the same bytes in UTF-8 and CP932: told as UTF-8, answered so
    assert resp.headers["content-type"].startswith("text/csv")
    assert resp.content.count(b"\r\n") == 2
    data = file_bytes([record(4)]).rstrip(b"\r\n") + b","  # a 19th field holding kanji in CP932
    resp = post_batch(world, data + "備考".encode("cp932") + b"\r\n")
    assert resp.headers["content-type"] == "text/csv; charset=Shift_JIS"
    (row,) = _rows(resp.content, "cp932")
    assert row[21] == "bad_record" and "項目の数が違います" in row[22]
    # An ASCII request whose client reads CP932 asks for it.
    resp = post_batch(world, file_bytes([record(5, inquirer_org=NAKANO)]), encoding="Shift_JIS")
    assert resp.headers["content-type"] == "text/csv; charset=Shift_JIS"
    assert "照会者機関コード" in resp.content.decode("cp932")
    before = world.atena.counts()
    assert_problem(post_batch(world, file_bytes([record(5)]), encoding="euc-jp"), 422, "unsupported_encoding")
    unchanged(before, world.atena.counts())


def test_the_batch_route_takes_business_systems_only(world: World) -> None:
    data = file_bytes([record(1)])
    staff = world.atena.sign_in("S0001")
    resp = world.atena.client.post("/v1/inquiries/batch", content=data, headers=staff, params={"system": "child_allowance"})
    assert_problem(resp, 401, "authentication_required")
    bad = {"Authorization": "Bearer not-a-token"}
    resp = world.atena.client.post("/v1/inquiries/batch", content=data, headers=bad, params={"system": "child_allowance"})
    assert_problem(resp, 401, "invalid_token")
    assert last_audit(world)["action"] == "inquiry.batch"


def test_a_file_refused_whole_asks_nothing(world: World, peers: Peers) -> None:
    before = world.atena.counts()
    assert_problem(post_batch(world, b""), 422, "bad_count")
    assert_problem(post_batch(world, file_bytes([record(1)]), name="../x"), 422, "invalid_request")
    assert peers.sent == []
    unchanged(before, world.atena.counts())


def test_a_business_system_inquires_online_by_its_own_number(world: World, peers: Peers) -> None:
    peers.answers["inquiry.start"] = lambda body: answer("20261206000000000301")
    body = {
        "system": "child_allowance", "business_atena_no": world.child_no(6), "procedure_code": CHILD_PROCEDURE,
        "info_kind_code": TAX_INFO, "provider_org": NAKANO, "as_of": "R6.6.1", "department": "KODOMO",
    }  # fmt: skip
    headers = world.atena.bearer("kodomo-batch", BATCH_SCOPE)
    resp = world.atena.client.post("/v1/inquiries", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "answered" and world.atena_nos[6] not in resp.text
    (sent,) = [b for _u, _a, typ, b in peers.sent if typ == "inquiry.start"]
    assert sent["atena_no"] == world.atena_nos[6] and sent["inquirer_department"] == "KODOMO"
    assert "inquirer_user" not in sent
    assert last_audit(world)["actor"] == "kodomo-batch"
    # Another affair: the system holds no scope for it; refused before any peer.
    resp = world.atena.client.post("/v1/inquiries", json={**body, "procedure_code": TAX_PROCEDURE}, headers=headers)
    assert_problem(resp, 403, "affair_not_permitted")
    assert "この業務システムは" in resp.json()["title"]
    assert len(peers.sent) == 1
    # The scope is the system's own: another system's numbers are not its to ask about.
    resp = world.atena.client.post("/v1/inquiries", json={**body, "system": "tax"}, headers=headers)
    assert_problem(resp, 403, "affair_not_permitted")


def test_scopes_of_inquiry_map_to_affairs_of_their_own_system_only() -> None:
    from renkei.atena import service

    scopes = [BATCH_SCOPE, f"tax:inquiries.{TAX_AFFAIR}:inquire", "child_allowance:inquiries.JMx:inquire",
              "child_allowance:fukuhon:register", f"child_allowance:inquiries.{TAX_AFFAIR}:read"]  # fmt: skip
    assert service.client_inquiry_roles(scopes, "child_allowance") == {f"{CHILD_AFFAIR}:照会"}
    assert service.inquiry_scope("child_allowance", CHILD_AFFAIR) == BATCH_SCOPE


def test_the_documented_example_reads(tmp_path: Path) -> None:
    """docs/batch-inquiry.md's example request line is a valid record."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "batch-inquiry.md").read_text(encoding="utf-8")
    example = next(line for line in doc.splitlines() if line.startswith("01,"))
    ctx = batch.Context(own_org=OWN, today=TODAY, system="child_allowance")
    _, (rec,) = read(example.encode() + b"\r\n", ctx)
    assert rec.error is None, rec.error


def test_a_record_a_peer_rate_limits_is_asked_again_after_its_window(world: World, peers: Peers) -> None:
    calls = {"n": 0}

    def limited_once(body: dict[str, Any]) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Problem(429, "rate_limited", "要求が多すぎます。", retry_after=0.2)
        return answer("20261206000000000401")

    peers.answers["inquiry.start"] = limited_once
    resp = post_batch(world, file_bytes([record(7)]))
    assert resp.status_code == 200, resp.text
    (row,) = _rows(resp.content)
    assert row[18:21] == ["09", "01", "20261206000000000401"] and calls["n"] == 2
    # Each attempt is logged and audited at atena as it happened.
    outcomes = [e["outcome"] for e in world.atena.audit()[-3:]]
    assert outcomes == ["rate_limited", "answered", "ok"]


def test_a_record_still_rate_limited_after_the_retries_is_an_error_row(
    world: World, peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    from renkei.atena import flows

    monkeypatch.setattr(flows, "BATCH_RATE_RETRIES", 1)

    def limited(_body: dict[str, Any]) -> dict[str, Any]:
        raise Problem(429, "rate_limited", "要求が多すぎます。", retry_after=0.1)

    peers.answers["inquiry.start"] = limited
    (row,) = _rows(post_batch(world, file_bytes([record(7)])).content)
    assert row[18:20] == ["99", "99"] and row[21] == "rate_limited"
    assert len([t for *_x, t, _b in peers.sent if t == "inquiry.start"]) == 2
