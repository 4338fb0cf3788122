"""`renkei demo`: a whole federation on loopback, with synthetic people, playing the scenarios.

Every step is printed in Japanese with English alongside. The exit status is 0
only if every scenario ended as expected.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pyotp

from renkei.atena.api import CSRF_HEADER, SESSION_COOKIE
from renkei.core import ids
from renkei.core.crypto import pki
from renkei.dummy import bulk, business
from renkei.dummy.model import CHILD, HEAD, RESIDENT, Person, SynthPopulation
from renkei.dummy.model import NAKANO as NAKANO_LG
from renkei.dummy.model import SHINJUKU as SHINJUKU_LG
from renkei.dummy.synth import DEMO_SEED, demo_config, generate
from renkei.federation import setup, staff
from renkei.federation.process import Federation, sigterm_as_interrupt
from renkei.federation.topology import HUB, JLIS, NAKANO, NENKIN, ORGS, SHINJUKU, TSA, Layout, Org
from renkei.staff.oauth import CLIENT_ASSERTION_TYPE, GRANT_TYPE, make_client_assertion

CHILD_ALLOWANCE_AFFAIR = "JM01000000074000"
CHILD_ALLOWANCE_PROCEDURE = "JT01010000074001"
LOCAL_TAX_AFFAIR = "JM01000000016000"
LOCAL_TAX_PROCEDURE = "JT01010000016001"
LOCAL_TAX_INFO = business.INFO_KINDS[business.SYSTEM_TAX]
CHILD_ALLOWANCE_INFO = business.INFO_KINDS[business.SYSTEM_CHILD_ALLOWANCE]
TAX_COPY_PUBLISHED = "2024-06-01"

RESIDENT_SYSTEM = "jumin01"  # the resident register (住民記録システム)
TAX_SYSTEM = business.SYSTEM_TAX
WELFARE_SYSTEM = "welfare"  # a system that manages non-residents (住登外者) of its own

STAFF = [
    setup.StaffSpec("S0001", "児童手当係 職員（架空）", (f"{CHILD_ALLOWANCE_AFFAIR}:照会",)),
    setup.StaffSpec("S0002", "住民税係 職員（架空）", (f"{LOCAL_TAX_AFFAIR}:照会",)),
    # For the staff UI (`renkei demo --serve`): a child-allowance clerk who may look up
    # addressees and see an individual number, an administrator, an auditor.
    setup.StaffSpec(
        "S0003",
        "児童手当係 主任（架空）",
        (f"{CHILD_ALLOWANCE_AFFAIR}:照会", "宛名:参照", "個人番号:表示"),
    ),
    setup.StaffSpec("S0090", "情報政策課 管理者（架空）", ("管理",)),
    setup.StaffSpec("S0091", "監査担当（架空）", ("監査",)),
]
CLIENTS = [
    setup.ClientSpec(
        "jumin01-batch",
        RESIDENT_SYSTEM,
        "住民記録システム 連携バッチ（架空）",
        (
            f"{RESIDENT_SYSTEM}:residents:register",
            f"{RESIDENT_SYSTEM}:pseudonyms:acquire",
            f"{RESIDENT_SYSTEM}:changes:register",
        ),
    ),
    setup.ClientSpec("tax-batch", TAX_SYSTEM, "税務システム 副本登録バッチ（架空）", (f"{TAX_SYSTEM}:fukuhon:register",)),
    setup.ClientSpec(
        "welfare-batch",
        WELFARE_SYSTEM,
        "福祉システム 住登外者管理（架空）",
        (f"{WELFARE_SYSTEM}:non_residents:register", f"{WELFARE_SYSTEM}:individual_numbers:search"),
    ),
]
# A business system asks for a fresh access token once its token is this old (seconds).
TOKEN_REFRESH_S = 300.0

Say = Callable[[str, str], None]


def say(ja: str, en: str) -> None:
    print(f"・{ja}\n  ({en})", flush=True)


class DemoFailure(Exception):
    pass


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    cookies: dict[str, str]


class _Http:
    """Blocking requests over one aiohttp session, run on an event loop of its own.

    The demo, `renkei dummy load` and the benchmark talk to an atena step by step from
    plain code; aiohttp is the one HTTP client of renkei outside the tests (STACK.md).
    Not for use inside a running event loop. Cookies are never kept: a staff session is
    sent explicitly with each request (`AtenaClient.staff_headers`).
    """

    def __init__(self, ssl_context: ssl.SSLContext, timeout: float) -> None:
        self._loop = asyncio.new_event_loop()
        self._session = self._loop.run_until_complete(self._open(ssl_context, timeout))

    @staticmethod
    async def _open(ssl_context: ssl.SSLContext, timeout: float) -> aiohttp.ClientSession:
        # uvicorn drops idle keep-alive connections after 5 s: never reuse one that old.
        connector = aiohttp.TCPConnector(ssl=ssl_context, keepalive_timeout=4.0)
        return aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout), cookie_jar=aiohttp.DummyCookieJar()
        )

    def post(self, url: str, *, json_body: Any = None, form: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> Reply:  # fmt: skip
        if self._loop.is_closed():
            raise DemoFailure(f"{url}: この接続は閉じられています（client closed）")
        return self._loop.run_until_complete(self._post(url, json_body, form, headers))

    async def _post(self, url: str, json_body: Any, form: dict[str, str] | None,
                    headers: dict[str, str] | None) -> Reply:  # fmt: skip
        try:
            async with self._session.post(url, json=json_body, data=form, headers=headers) as r:
                raw = await r.read()
                cookies = {name: morsel.value for name, morsel in r.cookies.items()}
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DemoFailure(f"{url}: 宛名システムに接続できません（{type(exc).__name__}: {exc}）") from exc
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise DemoFailure(f"{url}: 応答が JSON のオブジェクトではありません（HTTP {status}）")
        return Reply(status, body, cookies)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._session.close())
            self._loop.close()


@dataclass
class AtenaClient:
    """A staff terminal / business system talking to its own atena over mutual TLS.

    Business systems authenticate with OAuth client credentials (a ``client_secret_jwt``
    assertion for /oauth/token, then the bearer token); staff sign in with ID, password
    and a TOTP code and send the session cookie and the CSRF token. The credentials come
    from the 0600 file that set-up wrote; they are never printed. `close` when done.
    """

    base: str
    http: _Http
    credentials: dict[str, Any]
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    sessions: dict[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def open(cls, layout: Layout, org: Org) -> AtenaClient:
        # A business system of the organization, speaking TLS with atena's certificate.
        creds = layout.creds_dir(org, "atena")
        ctx = pki.client_ssl_context(creds / "tls.crt", creds / "tls.key", layout.ca_cert)
        return cls(layout.url(org, "atena"), _Http(ctx, timeout=120.0), setup.load_credentials(layout, org))

    def close(self) -> None:
        self.http.close()

    def access_token(self, client_id: str, scope: str) -> str:
        cached = self.tokens.get(scope)
        if cached is not None and time.monotonic() - cached[1] < TOKEN_REFRESH_S:
            return cached[0]
        client = self.credentials["clients"][client_id]
        endpoint = str(self.credentials["token_endpoint"])
        assertion = make_client_assertion(client_id, client["secret"], endpoint, datetime.now(UTC))
        r = self.http.post(
            self.base + "/oauth/token",
            form={
                "grant_type": GRANT_TYPE,
                "scope": scope,
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": assertion,
            },
        )
        if r.status != 200:
            raise DemoFailure(f"/oauth/token: {r.status} {r.body.get('error')} {r.body.get('error_description', '')}")
        token = str(r.body["access_token"])
        self.tokens[scope] = (token, time.monotonic())
        return token

    def sign_in(self, staff_id: str) -> None:
        member = self.credentials["staff"][staff_id]
        code = pyotp.TOTP(pyotp.parse_uri(member["totp_uri"]).secret).now()
        r = self.http.post(
            self.base + "/v1/session",
            json_body={"staff_id": staff_id, "password": member["password"], "totp": code},
        )
        if r.status != 200:
            raise DemoFailure(f"/v1/session: {r.status} {r.body.get('title')}")
        cookie = r.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise DemoFailure("/v1/session: no session cookie")
        self.sessions[staff_id] = (cookie, str(r.body["csrf_token"]))

    def staff_headers(self, staff_id: str) -> dict[str, str]:
        if staff_id not in self.sessions:
            self.sign_in(staff_id)
        cookie, csrf = self.sessions[staff_id]
        return {"Cookie": f"{SESSION_COOKIE}={cookie}", CSRF_HEADER: csrf}

    def post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        r = self.http.post(self.base + path, json_body=body, headers=headers)
        return r.status, r.body

    def ok(self, path: str, body: dict[str, Any], *, client_id: str, scope: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.access_token(client_id, scope)}"}
        status, data = self.post(path, body, headers)
        if status >= 400:
            raise DemoFailure(f"{path}: {status} {data.get('title')} {data.get('detail', '')}")
        return data

    def residents(self, persons: list[dict[str, Any]], *, start_acquisition: bool = True) -> dict[str, Any]:
        return self.ok("/v1/residents", {"persons": persons, "start_acquisition": start_acquisition},
                       client_id="jumin01-batch", scope=f"{RESIDENT_SYSTEM}:residents:register")

    def pseudonyms(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.ok(path, body, client_id="jumin01-batch", scope=f"{RESIDENT_SYSTEM}:pseudonyms:acquire")

    def fukuhon(self, system: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        return self.ok("/v1/fukuhon", {"system": system, "records": records},
                       client_id="tax-batch", scope=f"{system}:fukuhon:register")

    def inquire(self, staff_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.post("/v1/inquiries", body, self.staff_headers(staff_id))


def non_resident_number(client: AtenaClient, pop: SynthPopulation) -> dict[str, Any]:
    """住登外者: 新宿区's welfare system registers somebody living in 中野区 — candidates
    first (0310007/0310005), then a number with their acknowledgement (0310004/0310001) —
    and asks for their individual number, found by J-LIS on the 基本4情報 (番号利用事務:
    児童手当). The answer names the welfare system's own number only."""
    known = {r["individual_number"] for r in ward_records(pop, SHINJUKU_LG)}
    p = next(
        p for p in pop.persons
        if p.status == RESIDENT and p.lg_code == NAKANO_LG and p.individual_number not in known
        and not p.destination_address
    )  # fmt: skip
    who = bulk.jlis_identity(p)
    query = {**who, "postal_code": p.postal_code, "lg_code": p.lg_code, "system": WELFARE_SYSTEM}
    scope = f"{WELFARE_SYSTEM}:non_residents:register"
    shown = client.ok("/v1/non-residents/candidates", query, client_id="welfare-batch", scope=scope)
    mine = ids.make_atena_no(950_000_001)
    client.ok(
        "/v1/non-residents",
        {**query, "business_atena_no": mine, "acknowledgement": shown["acknowledgement"], "choice": "new"},
        client_id="welfare-batch",
        scope=scope,
    )
    found = client.ok(
        "/v1/non-residents/individual-number",
        {"system": WELFARE_SYSTEM, "business_atena_no": mine, "affair_code": CHILD_ALLOWANCE_AFFAIR},
        client_id="welfare-batch",
        scope=f"{WELFARE_SYSTEM}:individual_numbers:search",
    )
    if found["status"] != "found" or found["individual_number"] != p.individual_number:
        raise DemoFailure(f"住登外者の個人番号照会: {found['status']} {found['message']}")
    say(
        f"新宿区: 住登外者を登録し（候補 {len(shown['candidates'])} 件を確認）、J-LIS の本人確認情報から個人番号を取得しました",
        f"Shinjuku: a non-resident registered (after {len(shown['candidates'])} candidates), "
        "the individual number found by J-LIS on the four basic facts",
    )
    return found


def generate_population(seed: int = DEMO_SEED, shinjuku: int = 300, nakano: int = 200) -> SynthPopulation:
    """The demo's synthetic people (`renkei.dummy.synth.demo_config`)."""
    return generate(demo_config(seed, shinjuku, nakano))


def ward_records(pop: SynthPopulation, lg_code: str) -> list[dict[str, Any]]:
    """Who each ward's atena knows: its residents, the former residents its business
    systems still hold (taxed for the year, moved out, died), and whoever moved from it to
    the other ward in the window (its 除票), such as the children of the families who moved
    from 中野区 to 新宿区: 中野区 knows them, and holds no copy for them (scenario c)."""
    records = list(bulk.resident_records(pop, lg_code))
    known = {r["individual_number"] for r in records}
    records += [
        bulk.person_record(p, {}) for p in pop.persons
        if p.previous_lg_code == lg_code and p.moved_in_on is not None and p.individual_number not in known
    ]  # fmt: skip
    return records


def agency_records(pop: SynthPopulation) -> list[dict[str, Any]]:
    """日本年金機構 knows some adults under its own (synthetic) numbers."""
    adults = [p for p in pop.persons if p.status == RESIDENT and p.age_on(pop.reference_date) >= 20][:40]
    return [
        bulk.person_record(p, {"pension": ids.make_atena_no(900_000_000 + i)}) for i, p in enumerate(adults, start=1)
    ]


def tax_copies(pop: SynthPopulation, lg_code: str) -> list[dict[str, Any]]:
    """The ward's local-tax copies (副本) of the tax year, as its tax system registers them."""
    published = date.fromisoformat(TAX_COPY_PUBLISHED)
    return list(bulk.fukuhon_records(pop, lg_code, TAX_SYSTEM, valid_from=published))


def tax_copy_values(pop: SynthPopulation, person: Person, lg_code: str) -> dict[str, str] | None:
    """The items of `person`'s local-tax copy in `lg_code`, or None if the ward has none."""
    number = business.number(pop, person, lg_code, TAX_SYSTEM)
    if number is None:
        return None
    record = next(r for r in business.records(pop, lg_code, TAX_SYSTEM) if r.business_atena_no == number)
    return business.fukuhon_items(record)


def movers(pop: SynthPopulation) -> list[Person]:
    """新宿区's residents who moved in from 中野区 after the 賦課期日 (中野区 taxes them)."""
    base = date(pop.tax_year, 1, 1)
    return [
        p for p in pop.persons
        if p.status == RESIDENT and p.lg_code == SHINJUKU_LG and p.previous_lg_code == NAKANO_LG
        and p.moved_in_on is not None and p.moved_in_on > base
    ]  # fmt: skip


@dataclass
class Scenario:
    name: str
    title_ja: str
    title_en: str
    expected: str
    staff_id: str
    request: dict[str, Any]
    check: Callable[[int, dict[str, Any]], str | None]
    result: dict[str, Any] = field(default_factory=dict)


def _today() -> date:
    return datetime.now(ZoneInfo("Asia/Tokyo")).date()


def build_scenarios(pop: SynthPopulation) -> list[Scenario]:
    moved = movers(pop)

    def allowance_no(p: Person) -> str | None:
        return business.number(pop, p, SHINJUKU_LG, business.SYSTEM_CHILD_ALLOWANCE)

    def taxed_by_nakano(p: Person) -> bool:
        return business.number(pop, p, NAKANO_LG, TAX_SYSTEM) is not None

    # A parent who receives 児童手当 in 新宿区 and was taxed by 中野区 (the 世帯主 first).
    parents = sorted((p for p in moved if p.relationship != CHILD and allowance_no(p) and taxed_by_nakano(p)),
                     key=lambda p: (p.relationship != HEAD, p.key))  # fmt: skip
    children = [p for p in moved if p.relationship == CHILD and allowance_no(p) and not taxed_by_nakano(p)]
    taxpayers = [
        p for p in pop.persons
        if p.status == RESIDENT and p.lg_code == SHINJUKU_LG and p.moved_in_on is None
        and business.number(pop, p, SHINJUKU_LG, TAX_SYSTEM) is not None
    ]  # fmt: skip
    if not parents or not children or not taxpayers:
        raise DemoFailure("合成人口に必要な世帯がありません（population lacks the scenario households）")
    head, child, taxpayer = parents[0], children[0], taxpayers[0]
    expected_values = tax_copy_values(pop, head, NAKANO_LG)
    head_no, child_no = allowance_no(head), allowance_no(child)
    taxpayer_no = business.number(pop, taxpayer, SHINJUKU_LG, TAX_SYSTEM)
    today = _today().isoformat()

    def answered(status: int, body: dict[str, Any]) -> str | None:
        if status != 200 or body.get("status") != "answered":
            return f"expected answered, got {status} {body.get('status') or body.get('code')}"
        if body.get("values") != expected_values:
            return f"values differ: {body.get('values')} != {expected_values}"
        return None

    def refused(status: int, body: dict[str, Any]) -> str | None:
        if status != 403 or body.get("code") != "rule_violation" or not body.get("serial"):
            return f"expected 403 rule_violation with a serial, got {status} {body.get('code')}"
        return None

    def denied(status: int, body: dict[str, Any]) -> str | None:
        if status != 403 or body.get("code") != "affair_not_permitted" or body.get("serial"):
            return f"expected 403 affair_not_permitted without a serial, got {status} {body.get('code')}"
        return None

    def no_data(status: int, body: dict[str, Any]) -> str | None:
        if status != 200 or body.get("status") != "no_data":
            return f"expected no_data, got {status} {body.get('status') or body.get('code')}"
        return None

    return [
        Scenario(
            "a_move_in_tax",
            "新宿区の児童手当担当が、転入世帯の世帯主の地方税関係情報を中野区に照会する",
            "Shinjuku child-allowance staff ask Nakano for the local-tax information of a family that moved in",
            "answered",
            "S0001",
            {
                "system": "child_allowance",
                "business_atena_no": head_no,
                "procedure_code": CHILD_ALLOWANCE_PROCEDURE,
                "info_kind_code": LOCAL_TAX_INFO,
                "provider_org": NAKANO.org_code,
                "as_of": today,
            },
            answered,
        ),
        Scenario(
            "b_not_allowed",
            "新宿区の住民税担当が、規定のない児童手当関係情報を中野区に照会する",
            "Shinjuku local-tax staff ask Nakano for child-allowance information, which no rule allows",
            "refused",
            "S0002",
            {
                "system": "tax",
                "business_atena_no": taxpayer_no,
                "procedure_code": LOCAL_TAX_PROCEDURE,
                "info_kind_code": CHILD_ALLOWANCE_INFO,
                "provider_org": NAKANO.org_code,
                "as_of": today,
            },
            refused,
        ),
        Scenario(
            "c_no_copy",
            "新宿区の児童手当担当が、中野区に副本のない子について地方税関係情報を照会する",
            "Shinjuku child-allowance staff ask Nakano about a child Nakano holds no copy for",
            "no_data",
            "S0001",
            {
                "system": "child_allowance",
                "business_atena_no": child_no,
                "procedure_code": CHILD_ALLOWANCE_PROCEDURE,
                "info_kind_code": LOCAL_TAX_INFO,
                "provider_org": NAKANO.org_code,
                "as_of": today,
            },
            no_data,
        ),
        Scenario(
            "d_wrong_affair",
            "新宿区の住民税担当（児童手当の照会権限なし）が、児童手当の事務で照会しようとする",
            "Shinjuku local-tax staff, who hold no child-allowance role, try a child-allowance inquiry",
            "denied",
            "S0002",
            {
                "system": "child_allowance",
                "business_atena_no": head_no,
                "procedure_code": CHILD_ALLOWANCE_PROCEDURE,
                "info_kind_code": LOCAL_TAX_INFO,
                "provider_org": NAKANO.org_code,
                "as_of": today,
            },
            denied,
        ),
    ]


def prepare(layout: Layout, pop: SynthPopulation, database_urls: dict[str, str] | None = None) -> None:
    say("鍵と証明書を生成します（プライベートCA、機関ごとのTLS証明書・署名鍵・暗号鍵）",
        "generating the private CA and each organization's TLS certificate, signing and encryption keys")
    setup.init_pki(layout)
    setup.write_configs(layout, database_urls)
    say(f"情報提供ネットワークシステムの機関登録簿に{len(ORGS)}機関を登録します（タイムスタンプ局を含む）",
        f"registering {len(ORGS)} organizations in the hub's registry (the time-stamp authority among them)")
    setup.register_organizations(layout)
    n = setup.load_jlis(
        layout, list(bulk.jlis_rows(pop)), {p.resident_code: bulk.jlis_identity(p) for p in pop.persons}
    )
    say(f"J-LISに個人番号と住民票コードの対応 {n} 件を登録しました", f"J-LIS holds {n} individual-number/resident-code pairs")
    for org in (SHINJUKU, NAKANO, NENKIN):
        setup.enrol_atena(layout, org, STAFF, CLIENTS)
    staff.enrol_federation_staff(layout)  # operators of hub and J-LIS, staff of each chukan
    say("各団体の宛名システムに職員（パスワード・ワンタイムパスワード）と業務システム（OAuthクライアント）を登録しました"
        "（認証情報は各 secrets/demo-credentials.json、所有者のみ読取可）",
        "enrolled staff (password + TOTP) and business systems (OAuth clients) in each atena;"
        " credentials are in each atena's secrets/demo-credentials.json (mode 0600)")


def start(layout: Layout, fed: Federation) -> Federation:
    # The time-stamp authority first, and last to stop: every other node sends it its audit
    # checkpoints, the last one at shutdown; the hub stops after the members, so that the
    # authority can still look up their keys in its registry then.
    waves = {TSA.slug: 2, HUB.slug: 1}
    for org in sorted(ORGS, key=lambda o: o != TSA):
        for node in org.nodes:
            fed.start(f"{org.name}/{node}", node, layout.config_path(org, node), layout.url(org, node),
                      stop_wave=waves.get(org.slug, 0))
    creds = layout.creds_dir(SHINJUKU, "atena")
    fed.wait_healthy(layout.ca_cert, creds / "tls.crt", creds / "tls.key")
    return fed


def acquire_all(client: AtenaClient, org: Org, started: dict[str, Any], timeout: float = 120.0) -> None:
    """Wait until everybody's pseudonym is bound. Registration started the acquisition
    (0320008; ``started`` is what it said); only if it could not is it asked for again,
    for all pending persons — asking twice would give a person a second acquisition
    number. A business system never names 統合宛名番号: it reads counts."""
    if started.get("deferred") or started.get("problems"):
        result = client.pseudonyms("/v1/pseudonyms/acquire", {"all_pending": True})
    else:
        result = {"requested": started["requested"], "relayed": started["relayed"]}
    say(
        f"{org.name}: {result['requested']} 人の符号取得を依頼しました（J-LIS中継 {result['relayed']} 件）",
        f"{org.name}: pseudonym acquisition requested for {result['requested']} people, {result['relayed']} relayed by J-LIS",
    )
    deadline = time.monotonic() + timeout
    while True:
        status = client.pseudonyms("/v1/pseudonyms/status", {"all_persons": True})
        if status["bound"] == status["total"]:
            say(f"{org.name}: 全員の符号を取得しました（{status['bound']} 人）", f"{org.name}: all {status['bound']} pseudonyms bound")
            return
        if time.monotonic() > deadline:
            raise DemoFailure(f"{org.name}: 符号取得が完了しません（{status['bound']}/{status['total']}）")
        time.sleep(0.2)


def open_clients(layout: Layout) -> dict[str, AtenaClient]:
    return {org.slug: AtenaClient.open(layout, org) for org in (SHINJUKU, NAKANO, NENKIN)}


def play(layout: Layout, pop: SynthPopulation, clients: dict[str, AtenaClient] | None = None) -> list[Scenario]:
    """Pass `clients` to keep their signed-in sessions afterwards (a TOTP code is single-use);
    without, the clients opened here are closed at the end."""
    if clients is None:
        own = open_clients(layout)
        try:
            return play(layout, pop, own)
        finally:
            for client in own.values():
                client.close()
    started: dict[str, dict[str, Any]] = {}
    for org, records in (
        (SHINJUKU, ward_records(pop, SHINJUKU_LG)),
        (NAKANO, ward_records(pop, NAKANO_LG)),
        (NENKIN, agency_records(pop)),
    ):
        out = clients[org.slug].residents(records)
        started[org.slug] = out["acquisition"]
        say(f"{org.name}: {out['numbered']} 人に団体内統合宛名番号を付番しました",
            f"{org.name}: {out['numbered']} people numbered in the integrated addressee system")
    for org in (SHINJUKU, NAKANO, NENKIN):
        acquire_all(clients[org.slug], org, started[org.slug])
    for org, lg_code in ((SHINJUKU, SHINJUKU_LG), (NAKANO, NAKANO_LG)):
        copies = tax_copies(pop, lg_code)
        out = clients[org.slug].fukuhon(TAX_SYSTEM, copies)
        say(f"{org.name}: 地方税関係情報の副本 {out['registered']} 件を中間サーバーに登録しました",
            f"{org.name}: {out['registered']} local-tax copies registered in the intermediate server")
    non_resident_number(clients["shinjuku"], pop)
    scenarios = build_scenarios(pop)
    # Staff sign in first (password + TOTP): the round trips below are the inquiries alone.
    for staff_id in sorted({sc.staff_id for sc in scenarios}):
        clients["shinjuku"].staff_headers(staff_id)
    say("職員がログインしました（ID・パスワード・ワンタイムパスワード）", "staff signed in (ID, password, TOTP)")
    for sc in scenarios:
        say(f"シナリオ {sc.name}: {sc.title_ja}", f"scenario {sc.name}: {sc.title_en}")
        t0 = time.perf_counter()
        status, body = clients["shinjuku"].inquire(sc.staff_id, sc.request)
        ms = (time.perf_counter() - t0) * 1000
        failure = sc.check(status, body)
        if status == 200:
            outcome = body.get("status")
        else:
            outcome = {"rule_violation": "refused", "affair_not_permitted": "denied"}.get(
                str(body.get("code")), body.get("code")
            )
        sc.result = {
            "name": sc.name,
            "description_ja": sc.title_ja,
            "description_en": sc.title_en,
            "staff_id": sc.staff_id,
            "serial": body.get("serial"),
            "outcome": outcome,
            "expected": sc.expected,
            "ok": failure is None,
            "round_trip_ms": round(ms, 1),
            "http_status": status,
        }
        if status == 200:
            label = body.get("status_label")
            say(f"  → {label}（処理通番 {body.get('serial')}、{ms:.0f} ms）", f"  → {body.get('status')} (serial {body.get('serial')}, {ms:.0f} ms)")
            if body.get("values"):
                say(f"  → 回答値: {json.dumps(body['values'], ensure_ascii=False)}", "  → answered values")
        else:
            where = f"処理通番 {body.get('serial')}" if body.get("serial") else "ネットワークシステムへは送信せず"
            where_en = f"serial {body.get('serial')}" if body.get("serial") else "never sent to the hub"
            text = " ".join(str(t) for t in (body.get("title"), body.get("detail")) if t)
            say(f"  → {text}（{where}、{ms:.0f} ms）",
                f"  → refused: {body.get('code')} ({where_en}, {ms:.0f} ms)")
            sc.result["reason"] = body.get("detail")
        if failure is not None:
            say(f"  ✗ 期待と異なる結果です: {failure}", f"  ✗ unexpected: {failure}")
        else:
            say("  ✓ 期待どおり", "  ✓ as expected")
    return scenarios


def run_demo(
    var: Path,
    *,
    serve: bool = False,
    base_port: int = 18400,
    seed: int = DEMO_SEED,
    shinjuku: int = 300,
    nakano: int = 200,
    database_urls: dict[str, str] | None = None,
) -> int:
    """Set up, start and play; with ``serve`` keep the federation up until Ctrl+C or SIGTERM.

    Either signal stops every node process this started (they run in sessions of their own).
    """
    with sigterm_as_interrupt():
        return _run_demo(var, serve, base_port, seed, shinjuku, nakano, database_urls)


def _run_demo(
    var: Path,
    serve: bool,
    base_port: int,
    seed: int,
    shinjuku: int,
    nakano: int,
    database_urls: dict[str, str] | None,
) -> int:
    started = time.perf_counter()
    layout = Layout(var, base_port)
    for org in ORGS:
        shutil.rmtree(var / org.slug, ignore_errors=True)
    shutil.rmtree(var / "pki", ignore_errors=True)
    layout.demo_dir.mkdir(parents=True, exist_ok=True)
    say("renkei デモを開始します（合成データのみ。実在の人物ではありません）", "renkei demo: synthetic data only, no real person")
    # The CSV writer lives with the generator's files: imported here, so that importing this
    # module needs no package of the `synth` extra.
    from renkei.dummy.output import write_population_csv

    pop = generate_population(seed=seed, shinjuku=shinjuku, nakano=nakano)
    write_population_csv(pop, layout.demo_dir / "population.csv")
    moved = len(movers(pop))
    say(f"合成人口: {len(pop.persons)} 人、中野区からの転入者 {moved} 人（{layout.demo_dir / 'population.csv'}）",
        f"synthetic population: {len(pop.persons)} people, {moved} moved from Nakano to Shinjuku")
    prepare(layout, pop, database_urls)
    say("ノードを起動します（タイムスタンプ局、ネットワークシステム、J-LIS、新宿区・中野区・日本年金機構の宛名と中間サーバー、相互TLS）",
        "starting the time-stamp authority, hub, jlis and each organization's atena and chukan as separate processes with mutual TLS")
    fed = Federation()
    try:
        start(layout, fed)
        scenarios = play(layout, pop)
        report = {
            "generated_at": datetime.now(ZoneInfo("Asia/Tokyo")).isoformat(),
            "synthetic": True,
            "population": {"persons": len(pop.persons), "movers": moved, "seed": seed},
            "scenarios": [sc.result for sc in scenarios],
            "wall_seconds": round(time.perf_counter() - started, 2),
        }
        (layout.demo_dir / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
        ok = all(sc.result.get("ok") for sc in scenarios)
        say(f"結果: {'すべて期待どおり' if ok else '期待と異なるシナリオがあります'}（{layout.demo_dir / 'report.json'}）",
            f"result: {'all scenarios as expected' if ok else 'some scenario failed'}")
        if serve:
            for proc in fed.processes:
                print(f"  {proc.name}: {proc.url}/docs")
            for org in (SHINJUKU, NAKANO, NENKIN):
                print(f"  {org.name} 職員画面 / staff UI: {setup.staff_url(layout, org)}/"
                      f"  （認証情報: {setup.credentials_path(layout, org)}）")
            say("Ctrl+C で停止します", "press Ctrl+C to stop")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0 if ok else 1
    except (DemoFailure, RuntimeError) as exc:
        say(f"デモが失敗しました: {exc}", f"demo failed: {exc}")
        return 1
    finally:
        fed.stop()


__all__ = ["run_demo", "HUB", "JLIS"]
