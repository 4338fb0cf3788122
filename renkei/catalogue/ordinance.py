"""The municipality's ordinance for in-house sharing (庁内連携), as data.

番号法 lets a municipality use individual numbers in affairs of its own and share
特定個人情報 between its departments only as far as its ordinance (条例) says. Which
department may read what, for which affair, is therefore a list in the ordinance's
annexed table (別表) — data, like the catalogue's rules, loaded and validated at start.

One TOML file per municipality (UTF-8; a BOM is tolerated), the packaged sample being
``data/ordinance_131041.toml`` (新宿区, a SAMPLE, not the ward's real ordinance):

- top level: ``format = 1``, ``sample``, ``lg_code`` (地方公共団体コード), ``title``
  (the ordinance's name), optional ``note``
- ``[[system]]``: a business system (業務システムID as its OAuth clients are registered
  under) — ``id``, ``name``, ``department`` (担当課)
- ``[[affair]]``: an affair that uses shared data (利用事務) — ``code`` (JM + 14 digits),
  ``name``, ``origin`` = ``"catalogue"`` (a statutory affair, the code must be in the
  catalogue) or ``"ordinance"`` (独自利用事務: the ordinance's own, the code must not be in
  the catalogue), ``systems`` (the business systems that work for it)
- ``[[entry]]``: one line of the 別表 — ``id``, ``article`` (条項, e.g. 「第4条第2項・別表第2
  第1号」), ``affair`` (利用事務), ``provider_system`` (提供元), ``info_kind`` (特定個人情報名
  コード of the catalogue), ``items`` (the layout items that may be read; each must be in
  some edition of the info kind's layout), ``valid_from``, optional ``valid_to`` and
  ``note``

`load_ordinance` checks formats, unknown keys, duplicates, references (to the catalogue
and within the file), that no affair reads from its own system, date order and that no
two entries for the same (affair, provider, info kind) overlap; it raises
`OrdinanceError` naming file, line, entry and field in Japanese.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

from renkei.catalogue.catalogue import Catalogue
from renkei.catalogue.loader import AFFAIR_CODE, DATA_DIR, INFO_KIND_CODE, _Entry, _overlaps
from renkei.catalogue.models import CatalogueError, format_period
from renkei.core import ids

__all__ = [
    "AFFAIR_NOT_LISTED",
    "ENTRY_NOT_IN_FORCE",
    "NOT_LISTED",
    "SYSTEM_NOT_FOR_AFFAIR",
    "Ordinance",
    "OrdinanceAffair",
    "OrdinanceDecision",
    "OrdinanceEntry",
    "OrdinanceError",
    "OrdinanceSystem",
    "load_ordinance",
    "packaged_ordinance",
]

FORMAT_VERSION: Final = 1
AFFAIR_ORIGINS: Final = ("catalogue", "ordinance")
SYSTEM_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,39}")  # as business_links.system
ENTRY_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")

# OrdinanceDecision.code values (stable: the API's problem codes are built from them).
AFFAIR_NOT_LISTED: Final = "ordinance_affair_not_listed"
SYSTEM_NOT_FOR_AFFAIR: Final = "ordinance_system_not_for_affair"
NOT_LISTED: Final = "ordinance_not_listed"
ENTRY_NOT_IN_FORCE: Final = "ordinance_not_in_force"


class OrdinanceError(CatalogueError):
    """An ordinance file is malformed or inconsistent (with the catalogue or itself)."""

    def __init__(self, file: str, location: str | None, problem: str) -> None:
        super().__init__(file, location, problem)
        where = f"{file} {location}" if location else file
        self.args = (f"条例のデータに誤りがあります: {where}: {problem}",)


@dataclass(frozen=True)
class OrdinanceSystem:
    """A business system named by the ordinance, and the department (担当課) running it."""

    id: str
    name: str
    department: str

    @property
    def label(self) -> str:
        return f"{self.department}（{self.name}）"


@dataclass(frozen=True)
class OrdinanceAffair:
    """利用事務: an affair allowed to read shared data, and the systems working for it."""

    code: str
    name: str
    origin: str  # catalogue (法定事務) | ordinance (独自利用事務)
    systems: tuple[str, ...]


@dataclass(frozen=True)
class OrdinanceEntry:
    """One line of the ordinance's table: ``affair`` may read ``items`` of ``info_kind``
    from ``provider_system`` within the period (both ends included)."""

    id: str
    article: str
    affair_code: str
    provider_system: str
    info_kind_code: str
    items: tuple[str, ...]
    valid_from: date
    valid_to: date | None

    def in_force_on(self, on: date) -> bool:
        return self.valid_from <= on and (self.valid_to is None or on <= self.valid_to)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.affair_code, self.provider_system, self.info_kind_code)


@dataclass(frozen=True)
class OrdinanceDecision:
    """allowed → ``entry`` is the entry in force; refused → ``code`` and a Japanese ``message``."""

    allowed: bool
    entry: OrdinanceEntry | None
    code: str | None
    message: str | None


@dataclass(frozen=True, eq=False)
class Ordinance:
    lg_code: str
    title: str
    sample: bool
    source: str  # the file it was read from, for messages
    systems: dict[str, OrdinanceSystem]
    affairs: dict[str, OrdinanceAffair]
    entries: tuple[OrdinanceEntry, ...]
    info_kinds: dict[str, str] = field(default_factory=dict)  # code → 「TM…（名称）」 of those listed
    _by_key: dict[tuple[str, str, str], tuple[OrdinanceEntry, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        index: dict[tuple[str, str, str], list[OrdinanceEntry]] = {}
        for e in self.entries:
            index.setdefault(e.key, []).append(e)
        frozen = {k: tuple(sorted(v, key=lambda e: e.valid_from)) for k, v in index.items()}
        object.__setattr__(self, "_by_key", frozen)

    def entry(self, entry_id: str) -> OrdinanceEntry | None:
        return next((e for e in self.entries if e.id == entry_id), None)

    def check(
        self, system: str, affair_code: str, provider_system: str, info_kind_code: str, on: date
    ) -> OrdinanceDecision:
        """May ``system``, working for ``affair_code``, read ``info_kind_code`` published by
        ``provider_system`` on ``on``? Refusals, in this order: the affair is not in the
        ordinance, the system does not work for it, no entry lists the combination, or
        none is in force on that date (the message names their periods)."""
        affair = self.affairs.get(affair_code)
        if affair is None:
            return _refuse(
                AFFAIR_NOT_LISTED,
                f"事務「{affair_code}」は条例（{self.title}）に利用事務として定められていません。",
            )
        if system not in affair.systems:
            return _refuse(
                SYSTEM_NOT_FOR_AFFAIR,
                f"業務システム「{system}」は条例上、事務「{affair.name}」を処理するシステムではありません。",
            )
        candidates = self._by_key.get((affair_code, provider_system, info_kind_code), ())
        provider = self.systems.get(provider_system)
        provider_label = provider.label if provider is not None else provider_system
        kind = self.info_kinds.get(info_kind_code, info_kind_code)
        what = f"事務「{affair.name}」のために{provider_label}の特定個人情報「{kind}」を利用すること"
        if not candidates:
            return _refuse(NOT_LISTED, f"{what}は、条例（{self.title}）の別表に定められていません。")
        for e in candidates:
            if e.in_force_on(on):
                return OrdinanceDecision(True, e, None, None)
        periods = "、".join(f"{format_period(e.valid_from, e.valid_to)}（{e.article}）" for e in candidates)
        return _refuse(ENTRY_NOT_IN_FORCE, f"{what}は、{on.isoformat()}には認められていません。期間：{periods}")

    def provided_items(self, provider_system: str, info_kind_code: str) -> frozenset[str]:
        """The items of an info kind that some entry lets somebody read from the provider:
        all that the provider may publish to atena for sharing."""
        return frozenset(
            item
            for e in self.entries
            if e.provider_system == provider_system and e.info_kind_code == info_kind_code
            for item in e.items
        )


def _refuse(code: str, message: str) -> OrdinanceDecision:
    return OrdinanceDecision(False, None, code, message)


def packaged_ordinance(lg_code: str) -> Path | None:
    """The packaged sample ordinance of a municipality, if there is one."""
    path = DATA_DIR / f"ordinance_{lg_code}.toml"
    return path if path.is_file() else None


def load_ordinance(path: Path, catalogue: Catalogue) -> Ordinance:
    """Read and check one ordinance file against the catalogue; `OrdinanceError` if bad."""
    name = path.name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise OrdinanceError(name, None, f"ファイルを読めません（{exc.strerror or exc}）") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise OrdinanceError(name, None, f"UTF-8 として読めません（{exc.start}バイト目）") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message carries "(at line N, column M)".
        raise OrdinanceError(name, None, f"TOML として読めません: {exc}") from exc
    try:
        return _Reader(name, text, catalogue).read(doc)
    except OrdinanceError:
        raise
    except CatalogueError as exc:  # raised by the shared typed getters: same facts, our wording
        raise OrdinanceError(exc.file, exc.location, exc.problem) from None


class _Reader:
    def __init__(self, name: str, text: str, catalogue: Catalogue) -> None:
        self.name = name
        self.lines = text.splitlines()
        self.catalogue = catalogue

    def where(self, table: str, n: int, label: str = "") -> str:
        """「12行目 [[entry]] 3件目（C-03）」: the line of the n-th ``[[table]]`` header."""
        header = re.compile(rf"\s*\[\[\s*{re.escape(table)}\s*\]\]\s*(#.*)?")
        seen = 0
        line = None
        for i, text in enumerate(self.lines, 1):
            if header.fullmatch(text):
                seen += 1
                if seen == n:
                    line = i
                    break
        head = f"{line}行目 " if line is not None else ""
        return f"{head}[[{table}]] {n}件目{label}"

    def entry(self, table: str, n: int, raw: object, label: str = "") -> _Entry:
        return _Entry(self.name, self.where(table, n, label), raw)

    def read(self, doc: dict[str, Any]) -> Ordinance:
        top = _Entry(self.name, None, doc)
        top.only({"format", "sample", "lg_code", "title", "note", "system", "affair", "entry"})
        fmt = top.integer("format")
        if fmt != FORMAT_VERSION:
            top.fail(f"format は {FORMAT_VERSION} でなければなりません（{fmt}）")
        sample = top.boolean("sample")
        lg_code = top.text("lg_code")
        problem = ids.check(ids.IdKind.LG_CODE, lg_code)
        if problem is not None:
            top.fail(f"lg_code「{lg_code}」: {problem.message}")
        title = top.text("title")
        top.optional_text("note")
        systems = self._systems(top)
        affairs = self._affairs(top, systems)
        entries = self._entries(top, systems, affairs)
        return Ordinance(
            lg_code=lg_code,
            title=title,
            sample=sample,
            source=self.name,
            systems=systems,
            affairs=affairs,
            entries=entries,
            info_kinds={
                e.info_kind_code: self.catalogue.info_kinds[e.info_kind_code].label for e in entries
            },
        )

    def _systems(self, top: _Entry) -> dict[str, OrdinanceSystem]:
        out: dict[str, OrdinanceSystem] = {}
        for n, raw in enumerate(top.tables("system"), 1):
            e = self.entry("system", n, raw)
            sid = e.code("id", SYSTEM_ID, "業務システムID（英数字・_・-・.、40文字以内）")
            e = self.entry("system", n, raw, f"（{sid}）")
            e.only({"id", "name", "department"})
            if sid in out:
                e.fail(f"業務システムID「{sid}」が重複しています")
            out[sid] = OrdinanceSystem(sid, e.text("name"), e.text("department"))
        if not out:
            top.fail("業務システム（[[system]]）が一つもありません")
        return out

    def _affairs(self, top: _Entry, systems: dict[str, OrdinanceSystem]) -> dict[str, OrdinanceAffair]:
        out: dict[str, OrdinanceAffair] = {}
        for n, raw in enumerate(top.tables("affair"), 1):
            e = self.entry("affair", n, raw)
            code = e.code("code", AFFAIR_CODE, "事務コード（JM＋14桁）")
            e = self.entry("affair", n, raw, f"（{code}）")
            e.only({"code", "name", "origin", "systems"})
            if code in out:
                e.fail(f"事務コード「{code}」が重複しています")
            name = e.text("name")
            origin = e.choice("origin", AFFAIR_ORIGINS)
            in_catalogue = code in self.catalogue.affairs
            if origin == "catalogue" and not in_catalogue:
                e.fail(f'origin = "catalogue" ですが、事務コード「{code}」はカタログにありません')
            if origin == "ordinance" and in_catalogue:
                e.fail(
                    f'origin = "ordinance"（独自利用事務）ですが、事務コード「{code}」はカタログの'
                    "法定事務と同じです"
                )
            used_by = e.list_of_text("systems")
            if not used_by:
                e.fail("systems が空です（この事務を処理する業務システムを一つ以上書いてください）")
            _no_duplicates(e, "systems", used_by)
            for sid in used_by:
                if sid not in systems:
                    e.fail(f"systems の「{sid}」は [[system]] にありません")
            out[code] = OrdinanceAffair(code, name, origin, tuple(used_by))
        if not out:
            top.fail("利用事務（[[affair]]）が一つもありません")
        return out

    def _entries(
        self,
        top: _Entry,
        systems: dict[str, OrdinanceSystem],
        affairs: dict[str, OrdinanceAffair],
    ) -> tuple[OrdinanceEntry, ...]:
        out: list[OrdinanceEntry] = []
        places: dict[str, str] = {}
        for n, raw in enumerate(top.tables("entry"), 1):
            e = self.entry("entry", n, raw)
            eid = e.code("id", ENTRY_ID, "別表の項のID（英数字・_・-、32文字以内）")
            e = self.entry("entry", n, raw, f"（{eid}）")
            e.only(
                {"id", "article", "affair", "provider_system", "info_kind", "items", "valid_from", "valid_to", "note"}
            )
            if eid in places:
                e.fail(f"ID「{eid}」が重複しています（{places[eid]}）")
            places[eid] = self.where("entry", n)
            article = e.text("article")
            affair_code = e.code("affair", AFFAIR_CODE, "事務コード（JM＋14桁）")
            affair = affairs.get(affair_code)
            if affair is None:
                e.fail(f"affair「{affair_code}」は [[affair]] にありません")
            provider = e.code("provider_system", SYSTEM_ID, "業務システムID")
            if provider not in systems:
                e.fail(f"provider_system「{provider}」は [[system]] にありません")
            if provider in affair.systems:
                e.fail(
                    f"provider_system「{provider}」は事務「{affair.name}」自身を処理するシステムです"
                    "（同じシステム内の利用は庁内連携ではありません）"
                )
            kind_code = e.code("info_kind", INFO_KIND_CODE, "特定個人情報名コード（TM＋14桁）")
            kind = self.catalogue.info_kinds.get(kind_code)
            if kind is None:
                e.fail(f"info_kind「{kind_code}」はカタログの特定個人情報にありません")
            items = e.list_of_text("items")
            if not items:
                e.fail("items が空です（利用できる項目を一つ以上書いてください）")
            _no_duplicates(e, "items", items)
            known = {it.code for ed in kind.editions for it in ed.items}
            for item in items:
                if item not in known:
                    e.fail(f"items の「{item}」は特定個人情報「{kind.label}」のレイアウトにありません")
            valid_from = e.day("valid_from")
            valid_to = e.optional_day("valid_to")
            if valid_to is not None and valid_to < valid_from:
                e.fail(f"valid_to（{valid_to}）が valid_from（{valid_from}）より前です")
            e.optional_text("note")
            entry = OrdinanceEntry(
                id=eid,
                article=article,
                affair_code=affair_code,
                provider_system=provider,
                info_kind_code=kind_code,
                items=tuple(items),
                valid_from=valid_from,
                valid_to=valid_to,
            )
            for other in out:
                if other.key == entry.key and _overlaps(other.valid_from, other.valid_to, valid_from, valid_to):
                    e.fail(
                        f"期間 {format_period(valid_from, valid_to)} が、同じ利用事務・提供元・特定個人情報の"
                        f"「{other.id}」（{places[other.id]}）の期間 "
                        f"{format_period(other.valid_from, other.valid_to)} と重なっています"
                    )
            out.append(entry)
        if not out:
            top.fail("別表の項（[[entry]]）が一つもありません")
        return tuple(out)


def _no_duplicates(e: _Entry, key: str, values: Iterable[str]) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            e.fail(f"{key} の「{v}」が重複しています")
        seen.add(v)
