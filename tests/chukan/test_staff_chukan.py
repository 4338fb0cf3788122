"""Chukan staff see the provision records (情報提供等の記録) of the affairs they hold only,
and auditors export every record through the approval flow — SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import orjson
import pytest

from renkei.catalogue import load_catalogue
from renkei.chukan import service
from renkei.core import ids
from renkei.core.db import transaction
from renkei.staff.roles import PermissionDenied
from tests.api.fed import Federation, assert_problem, build_federation, unchanged
from tests.core.staff_kit import NodeKit, open_node

CHILD_AFFAIR, TAX_AFFAIR = "JM01000000074000", "JM01000000016000"
CHILD_PROC, CHILD_PROC2, TAX_PROC = "JT01010000074001", "JT01010000074002", "JT01010000016001"
NHI_PROC = "JT01010000901001"
PERSON = ids.make_atena_no(910_001)
OTHER = ids.make_atena_no(910_002)
NAKANO = "1311480000000000"
# (serial, procedure, person)
RECORDS = [
    ("20250401000000000001", CHILD_PROC, PERSON),
    ("20250401000000000002", CHILD_PROC2, PERSON),
    ("20250401000000000003", TAX_PROC, PERSON),
    ("20250401000000000004", NHI_PROC, PERSON),
    ("20250401000000000005", TAX_PROC, OTHER),
]


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return build_federation(tmp_path_factory, "staff-chukan")


@pytest.fixture
def chukan(fed: Federation, db_url: str) -> Iterator[NodeKit]:
    with open_node(fed, "chukan", db_url) as kit:
        kit.enrol("C0201", f"{CHILD_AFFAIR}:参照", name="児童手当係（架空）")
        kit.enrol("C0202", f"{TAX_AFFAIR}:参照", name="住民税係（架空）")
        kit.enrol("C0203", f"{CHILD_AFFAIR}:参照", f"{TAX_AFFAIR}:参照", name="両方（架空）")
        kit.enrol("C0204", f"{TAX_AFFAIR}:照会", name="照会だけ（架空）")
        kit.enrol("U0001", "監査")
        kit.enrol("U0002", "監査")
        rt = kit.app.state.rt
        with transaction(rt.sessions) as s:
            for i, (serial, proc, person) in enumerate(RECORDS):
                service.record(
                    s,
                    serial=serial,
                    direction="inquiry" if i % 2 else "provision",
                    counterpart_org=NAKANO,
                    procedure_code=proc,
                    info_kind_code="TM00000000000002",
                    atena_no=person,
                    as_of="2025-04-01",
                    outcome="answered",
                    now=kit.clock() - timedelta(minutes=10 - i),
                )
        yield kit


def records(kit: NodeKit, staff_id: str, atena_no: str = PERSON) -> list[tuple[str, str]]:
    resp = kit.client.get(
        f"/v1/provision-records?atena_no={atena_no}", headers=kit.sign_in(staff_id)
    )
    assert resp.status_code == 200, resp.text
    return [(r["serial"][-1], r["affair_code"]) for r in resp.json()["records"]]


def test_each_clerk_sees_the_records_of_their_own_affair(chukan: NodeKit) -> None:
    assert records(chukan, "C0201") == [("2", CHILD_AFFAIR), ("1", CHILD_AFFAIR)]
    entry = chukan.audit()[-1]
    assert (entry["actor"], entry["action"], entry["outcome"]) == (
        "C0201",
        "provision_records.view",
        "ok",
    )
    assert (entry["subject"], entry["affair"]) == (PERSON, CHILD_AFFAIR)
    assert entry["detail"] == {"affairs": [CHILD_AFFAIR], "count": 2}
    assert records(chukan, "C0202") == [("3", TAX_AFFAIR)]
    assert records(chukan, "C0203") == [("3", TAX_AFFAIR), ("2", CHILD_AFFAIR), ("1", CHILD_AFFAIR)]
    assert records(chukan, "C0202", OTHER) == [("5", TAX_AFFAIR)]
    # Nobody here holds 国民健康保険 roles: record 4 is never shown.
    assert all(serial != "4" for serial, _ in records(chukan, "C0203"))


def test_without_a_read_role_the_records_are_refused(chukan: NodeKit) -> None:
    for staff_id in ("C0204", "U0001"):  # 照会 is not 参照; an auditor reads the audit log instead
        headers = chukan.sign_in(staff_id)
        before = chukan.counts()
        resp = chukan.client.get(f"/v1/provision-records?atena_no={PERSON}", headers=headers)
        problem = assert_problem(resp, 403, "role_required")
        assert "参照" in problem["title"]
        unchanged(before, chukan.counts())
        entry = chukan.audit()[-1]
        assert (entry["actor"], entry["outcome"], entry["subject"]) == (
            staff_id,
            "role_required",
            PERSON,
        )


def test_bad_atena_no_is_refused_and_not_logged(chukan: NodeKit) -> None:
    headers = chukan.sign_in("C0201")
    number = ids.make_individual_number("12345678901")
    for bad in ("123", number, ids.make_atena_no(1)[:-1] + "0"):
        resp = chukan.client.get("/v1/provision-records", params={"atena_no": bad}, headers=headers)
        assert_problem(resp, 422, "invalid_atena_no")
        entry = chukan.audit()[-1]
        assert entry["outcome"] == "invalid_atena_no" and entry["subject"] is None
    assert number not in repr(chukan.audit())
    assert_problem(
        chukan.client.get("/v1/provision-records", headers=headers), 422, "invalid_request"
    )


def test_service_checks_the_role_itself(chukan: NodeKit) -> None:
    """The rule is in the service function, not only at the route."""
    catalogue = load_catalogue()
    with chukan.app.state.rt.sessions() as s:
        with pytest.raises(PermissionDenied):
            service.provision_records_for_staff(
                s, catalogue, ["監査", f"{TAX_AFFAIR}:照会"], PERSON
            )
        views, affairs = service.provision_records_for_staff(
            s, catalogue, [f"{TAX_AFFAIR}:参照"], PERSON
        )
    assert affairs == [TAX_AFFAIR] and [v.procedure_code for v in views] == [TAX_PROC]


def test_auditor_exports_the_provision_records(chukan: NodeKit) -> None:
    clerk = chukan.sign_in("C0201")
    resp = chukan.client.post(
        "/v1/exports", headers=clerk, json={"kind": "provision_records", "params": {}}
    )
    assert_problem(resp, 403, "role_required")
    auditor = chukan.sign_in("U0001")
    resp = chukan.client.post(
        "/v1/exports", headers=auditor, json={"kind": "provision_records", "params": {}}
    )
    assert resp.status_code == 201, resp.text
    req = resp.json()
    assert req["estimated_rows"] == len(RECORDS) and req["status"] == "approved"
    resp = chukan.client.get(f"/v1/exports/{req['id']}/download", headers=auditor)
    assert resp.status_code == 200, resp.text
    lines = resp.text.splitlines()
    assert orjson.loads(lines[0])["renkei_export"]["exporter"] == "U0001"
    assert sorted(orjson.loads(line)["serial"] for line in lines[1:]) == sorted(
        r[0] for r in RECORDS
    )
    entry = chukan.audit()[-1]
    assert (entry["action"], entry["detail"]["kind"], entry["detail"]["rows"]) == (
        "export.download",
        "provision_records",
        len(RECORDS),
    )
