"""atena's 宛名一覧 export (CSV): a role, the exporter in the file, a second person's
approval above the size limit, an audit entry naming what was exported (issue 3, item 7).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest

from renkei.core import ids
from renkei.staff.exports import ExportPolicy
from tests.api.fed import Federation, assert_problem
from tests.atena.kit import AtenaKit, open_atena
from tests.atena.test_auth_api import person

MIN_ROWS = 5


@pytest.fixture(scope="module")
def atena(fed: Federation) -> Iterator[AtenaKit]:
    with open_atena(fed) as a:
        persons = [
            person(300 + n, business_numbers={"tax": ids.make_atena_no(730_000 + n)})
            for n in range(MIN_ROWS)
        ]
        r = a.post("/v1/residents", {"persons": persons})
        assert r.status_code == 200, r.text
        yield a


def _ask(atena: AtenaKit, staff_id: str, params: dict[str, object]) -> tuple[dict[str, str], dict]:
    headers = atena.sign_in(staff_id)
    resp = atena.client.post("/v1/exports", json={"kind": "addressees", "params": params}, headers=headers)
    return headers, resp.json() | {"_status": resp.status_code}


def test_small_export_runs_at_once_and_names_the_exporter(atena: AtenaKit) -> None:
    atena.app.state.export_policy = ExportPolicy(approval_threshold_rows=1000)
    headers, req = _ask(atena, "S0007", {"residence": "resident"})
    assert req["_status"] == 201, req
    assert req["status"] == "approved" and req["estimated_rows"] >= MIN_ROWS
    resp = atena.client.get(f"/v1/exports/{req['id']}/download", headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    lines = resp.text.splitlines()
    assert lines[0].startswith("# 出力者: S0007 / 依頼番号: ")
    rows = list(csv.reader(io.StringIO("\n".join(lines[1:]))))
    assert rows[0][:3] == ["統合宛名番号", "住民区分", "氏"]
    assert len(rows) - 1 == req["estimated_rows"]
    assert all(r[1] == "住民" for r in rows[1:])
    # No individual number in the file, whatever the column.
    assert ids.make_individual_number(f"{60_000_000_000 + 300:011d}") not in resp.text
    assert any(r[6].startswith("昭和") for r in rows[1:])  # 生年月日 in 和暦
    entry = atena.audit()[-1]
    assert (entry["actor"], entry["action"], entry["outcome"]) == ("S0007", "export.download", "ok")
    # A download runs once.
    again = atena.client.get(f"/v1/exports/{req['id']}/download", headers=headers)
    assert again.status_code == 409


def test_large_export_waits_for_another_staff_member(atena: AtenaKit) -> None:
    atena.app.state.export_policy = ExportPolicy(approval_threshold_rows=2)
    headers, req = _ask(atena, "S0007", {})
    assert req["status"] == "pending" and req["needs_approval"]
    early = atena.client.get(f"/v1/exports/{req['id']}/download", headers=headers)
    assert early.status_code in (403, 409) and early.headers["content-type"].startswith("application/problem+json")
    # Not by the requester, not by someone without the role.
    mine = atena.client.post(f"/v1/exports/{req['id']}/approve", headers=headers)
    assert_problem(mine, 403, "self_approval")
    other = atena.client.post(f"/v1/exports/{req['id']}/approve", headers=atena.sign_in("S0002"))
    assert other.status_code == 403
    ok = atena.client.post(f"/v1/exports/{req['id']}/approve", headers=atena.sign_in("S0008"))
    assert ok.status_code == 200 and ok.json()["status"] == "approved", ok.text
    headers = atena.sign_in("S0007")
    resp = atena.client.get(f"/v1/exports/{req['id']}/download", headers=headers)
    assert resp.status_code == 200
    assert "承認者: S0008" in resp.text.splitlines()[0]


def test_export_needs_the_role_and_valid_params(atena: AtenaKit) -> None:
    _, req = _ask(atena, "S0001", {})
    assert req["_status"] == 403
    _, req = _ask(atena, "S0007", {"residence": "everyone"})
    assert req["_status"] == 422 and req["code"] == "bad_export_params"
    _, req = _ask(atena, "S0007", {"individual_number": "1"})
    assert req["_status"] == 422 and req["code"] == "bad_export_params"
