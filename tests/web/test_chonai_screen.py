"""The 庁内連携 screen of atena's staff UI (renkei.web.chonai), on both backends: a staff
member holding <affair>:参照 reads one person under an entry of the sample ordinance,
audited per person; another affair's entry, or no such role, is refused and audited,
with nothing else written."""

from __future__ import annotations

from renkei.atena import chonai
from renkei.core.db import transaction
from tests.web.kit import TAX_SYSTEM_NO, Web, add_staff

SHUGAKU_AFFAIR = "JM13104100000002"
TAX_INFO = "TM00000000000002"


def _setup(web: Web) -> None:
    web.uris["shugaku"] = add_staff(web.atena, web.clock, "shugaku", "学校運営課（架空）", (f"{SHUGAKU_AFFAIR}:参照",))
    state = web.atena.state
    with transaction(state.rt.sessions) as s:
        done = chonai.publish(
            s, state.cipher, state.catalogue, state.ordinance, "tax", TAX_INFO,
            [{"business_atena_no": TAX_SYSTEM_NO, "record_key": "2024",
              "values": {"K001": "2024", "K002": "1", "K003": "4100000", "K004": "150000"}}],
            web.clock(), "test",
        )  # fmt: skip
    assert done.added == 1


def test_staff_read_under_the_ordinance_is_shown_and_logged(web: Web) -> None:
    _setup(web)
    csrf = web.sign_in("shugaku")
    home = web.client.get("/")
    assert "/atena/chonai" in home.text  # the menu offers it
    form = web.client.get("/atena/chonai")
    assert form.status_code == 200 and 'value="T1-02"' in form.text and 'value="T1-01"' not in form.text
    resp = web.client.post(
        "/atena/chonai",
        data={"csrf_token": csrf, "entry": "T1-02", "atena_no": web.people[0], "as_of": "令和7年4月1日"},
        headers=web.htmx(),
    )
    assert resp.status_code == 200, resp.text
    assert "該当あり" in resp.text and "4100000" in resp.text and "K003（総所得金額等）" in resp.text
    assert "150000" not in resp.text  # 所得割額 is not an item of T1-02
    entry = web.last_audit("chonai.read.person")
    assert (entry["actor"], entry["subject"], entry["affair"], entry["ref"]) == (
        "shugaku", web.people[0], SHUGAKU_AFFAIR, "T1-02"
    )


def test_another_affairs_entry_and_no_role_are_refused(web: Web) -> None:
    _setup(web)
    csrf = web.sign_in("shugaku")
    before = web.counts()
    resp = web.client.post(
        "/atena/chonai",
        data={"csrf_token": csrf, "entry": "T1-01", "atena_no": web.people[0], "as_of": "R7.4.1"},
        headers=web.htmx(),
    )
    assert resp.status_code == 403 and 'data-code="affair_not_permitted"' in resp.text
    assert "4100000" not in resp.text
    web.unchanged_since(before)
    assert web.last_audit("chonai.read")["outcome"] == "affair_not_permitted"
    resp = web.client.post(
        "/atena/chonai",
        data={"csrf_token": csrf, "entry": "T1-02", "atena_no": "000000000000000", "as_of": "R7.4.1"},
        headers=web.htmx(),
    )
    assert resp.status_code in (404, 422) and "data-code=" in resp.text
    web.sign_in("viewer")  # 宛名:参照 only
    assert web.client.get("/atena/chonai").status_code == 403
    assert web.last_audit("chonai.read")["actor"] == "viewer"
