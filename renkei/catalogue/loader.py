"""Load and validate the catalogue data files.

A catalogue directory holds (UTF-8; a BOM is tolerated):

- ``catalogue.toml``  manifest: ``format = 1``, ``edition_label``, ``sample``, ``note``,
  ``organization_kinds``
- ``affairs.toml``    ``[[affair]]`` (code, name, number_use, origin) with
  ``[[affair.procedure]]`` (code, name, origin)
- ``info_kinds.toml`` ``[[info_kind]]`` (code, name, origin)
- ``layouts/<TM code>.toml``  ``info_kind`` and ``[[edition]]`` (dataset, edition,
  valid_from, valid_to) with ``[[edition.item]]`` (code, name, type, required,
  max_length, minimum, maximum, codes, sensitive); one file per info kind
- ``rules.csv``       header ``id,inquirer_kind,procedure_code,provider_kind,
  info_kind_code,valid_from,valid_to,source,note``; lines starting with ``#`` and blank
  lines are skipped; one record per line

Every TOML data file may carry ``sample = true|false``; it must agree with the manifest.
`load_catalogue` checks everything (code formats, unknown keys, duplicates, references
between files, date order, overlapping editions or rules) and raises `CatalogueError`
naming the file, the line or entry, and the problem.
"""

from __future__ import annotations

import csv
import re
import tomllib
from collections.abc import Callable, Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final, NoReturn

from renkei.catalogue.catalogue import Catalogue
from renkei.catalogue.models import (
    ITEM_TYPES,
    Affair,
    CatalogueError,
    CodeList,
    Edition,
    InfoKind,
    LayoutItem,
    Procedure,
    Rule,
    format_period,
)

DATA_DIR: Final = Path(__file__).parent / "data"

MANIFEST: Final = "catalogue.toml"
AFFAIRS: Final = "affairs.toml"
INFO_KINDS: Final = "info_kinds.toml"
LAYOUTS: Final = "layouts"
RULES: Final = "rules.csv"

FORMAT_VERSION: Final = 1
RULE_COLUMNS: Final = (
    "id",
    "inquirer_kind",
    "procedure_code",
    "provider_kind",
    "info_kind_code",
    "valid_from",
    "valid_to",
    "source",
    "note",
)
ORIGINS: Final = ("known", "ours")

AFFAIR_CODE: Final = re.compile(r"JM[0-9]{14}")
PROCEDURE_CODE: Final = re.compile(r"JT[0-9]{14}")
INFO_KIND_CODE: Final = re.compile(r"TM[0-9]{14}")
DATASET_NO: Final = re.compile(r"[0-9]{4}")
EDITION_NO: Final = re.compile(r"[0-9]{4}")
ITEM_CODE: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
RULE_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
ISO_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def load_catalogue(directory: Path | None = None) -> Catalogue:
    """Load the catalogue in `directory` (None = the packaged sample) and validate it."""
    root = DATA_DIR if directory is None else Path(directory)
    manifest = _read_toml(root, MANIFEST)
    m = _Entry(MANIFEST, None, manifest)
    m.only({"format", "edition_label", "sample", "note", "organization_kinds"})
    fmt = m.integer("format")
    if fmt != FORMAT_VERSION:
        m.fail(f"format は {FORMAT_VERSION} でなければなりません（{fmt}）")
    edition_label = m.text("edition_label")
    sample = m.boolean("sample")
    m.optional_text("note")
    kinds = m.list_of_text("organization_kinds")
    if not kinds:
        m.fail("organization_kinds が空です")
    _no_duplicates(MANIFEST, "organization_kinds", kinds)

    affairs, procedures = _load_affairs(root, sample)
    info_names = _load_info_kinds(root, sample)
    info_kinds = _load_layouts(root, sample, info_names)
    rules = _load_rules(root, set(kinds), procedures, info_kinds)
    return Catalogue(
        affairs=affairs,
        procedures=procedures,
        info_kinds=info_kinds,
        rules=rules,
        sample=sample,
        edition_label=edition_label,
        organization_kinds=tuple(kinds),
    )


# ---------------------------------------------------------------------- affairs


def _load_affairs(root: Path, sample: bool) -> tuple[dict[str, Affair], dict[str, Procedure]]:
    doc = _read_toml(root, AFFAIRS)
    top = _Entry(AFFAIRS, None, doc)
    top.only({"sample", "affair"})
    _check_sample(top, sample)
    affairs: dict[str, Affair] = {}
    procedures: dict[str, Procedure] = {}
    for n, raw in enumerate(top.tables("affair"), 1):
        a = _Entry(AFFAIRS, f"[[affair]] {n}件目", raw)
        code = a.code("code", AFFAIR_CODE, "事務コード（JM＋14桁）")
        a = a.named(f"[[affair]] {n}件目（{code}）")
        a.only({"code", "name", "number_use", "origin", "procedure"})
        if code in affairs:
            a.fail(f"事務コード「{code}」が重複しています")
        name = a.text("name")
        number_use = a.boolean("number_use")
        a.choice("origin", ORIGINS)
        procs: list[Procedure] = []
        for k, praw in enumerate(a.tables("procedure"), 1):
            p = _Entry(AFFAIRS, f"[[affair]] {code} の [[affair.procedure]] {k}件目", praw)
            pcode = p.code("code", PROCEDURE_CODE, "事務手続コード（JT＋14桁）")
            p = p.named(f"[[affair]] {code} の [[affair.procedure]] {k}件目（{pcode}）")
            p.only({"code", "name", "origin"})
            if pcode in procedures:
                other = procedures[pcode].affair_code
                p.fail(f"事務手続コード「{pcode}」が重複しています（事務「{other}」にもあります）")
            proc = Procedure(code=pcode, name=p.text("name"), affair_code=code)
            p.choice("origin", ORIGINS)
            procedures[pcode] = proc
            procs.append(proc)
        if not procs:
            a.fail("事務手続が一つもありません")
        affairs[code] = Affair(code=code, name=name, number_use=number_use, procedures=tuple(procs))
    if not affairs:
        top.fail("事務が一つもありません")
    return affairs, procedures


# ---------------------------------------------------------------------- info kinds


def _load_info_kinds(root: Path, sample: bool) -> dict[str, str]:
    doc = _read_toml(root, INFO_KINDS)
    top = _Entry(INFO_KINDS, None, doc)
    top.only({"sample", "info_kind"})
    _check_sample(top, sample)
    names: dict[str, str] = {}
    for n, raw in enumerate(top.tables("info_kind"), 1):
        e = _Entry(INFO_KINDS, f"[[info_kind]] {n}件目", raw)
        code = e.code("code", INFO_KIND_CODE, "特定個人情報名コード（TM＋14桁）")
        e = e.named(f"[[info_kind]] {n}件目（{code}）")
        e.only({"code", "name", "origin"})
        if code in names:
            e.fail(f"特定個人情報名コード「{code}」が重複しています")
        name = e.text("name")
        if name in names.values():
            e.fail(f"特定個人情報の名称「{name}」が重複しています")
        e.choice("origin", ORIGINS)
        names[code] = name
    if not names:
        top.fail("特定個人情報が一つもありません")
    return names


# ---------------------------------------------------------------------- layouts


def _load_layouts(root: Path, sample: bool, names: dict[str, str]) -> dict[str, InfoKind]:
    folder = root / LAYOUTS
    if not folder.is_dir():
        raise CatalogueError(LAYOUTS, None, "レイアウトのディレクトリがありません")
    editions: dict[str, tuple[Edition, ...]] = {}
    for path in sorted(folder.glob("*.toml")):
        rel = f"{LAYOUTS}/{path.name}"
        doc = _read_toml(root, rel)
        top = _Entry(rel, None, doc)
        top.only({"sample", "info_kind", "edition"})
        _check_sample(top, sample)
        code = top.code("info_kind", INFO_KIND_CODE, "特定個人情報名コード（TM＋14桁）")
        if path.stem != code:
            top.fail(f"ファイル名は info_kind に合わせて「{code}.toml」としてください")
        if code not in names:
            top.fail(f"特定個人情報名コード「{code}」は {INFO_KINDS} にありません")
        editions[code] = _load_editions(rel, top)
    for code in names:
        if code not in editions:
            raise CatalogueError(INFO_KINDS, code, f"レイアウト {LAYOUTS}/{code}.toml がありません")
    return {
        code: InfoKind(code=code, name=name, editions=editions[code])
        for code, name in names.items()
    }


def _load_editions(rel: str, top: _Entry) -> tuple[Edition, ...]:
    out: list[Edition] = []
    for n, raw in enumerate(top.tables("edition"), 1):
        e = _Entry(rel, f"[[edition]] {n}件目", raw)
        dataset = e.code("dataset", DATASET_NO, "データセット番号（4桁）")
        number = e.code("edition", EDITION_NO, "版番号（4桁）")
        e = e.named(f"[[edition]] {n}件目（版番号 {number}）")
        e.only({"dataset", "edition", "valid_from", "valid_to", "item"})
        valid_from = e.day("valid_from")
        valid_to = e.optional_day("valid_to")
        if valid_to is not None and valid_to < valid_from:
            e.fail(f"valid_to（{valid_to}）が valid_from（{valid_from}）より前です")
        for prev in out:
            if prev.edition == number:
                e.fail(f"版番号「{number}」が重複しています")
            if _overlaps(prev.valid_from, prev.valid_to, valid_from, valid_to):
                e.fail(
                    f"有効期間 {format_period(valid_from, valid_to)} が版番号「{prev.edition}」の"
                    f"有効期間 {format_period(prev.valid_from, prev.valid_to)} と重なっています"
                )
        items: list[LayoutItem] = []
        for k, iraw in enumerate(e.tables("item"), 1):
            item = _load_item(_Entry(rel, f"版番号 {number} の [[edition.item]] {k}件目", iraw))
            if any(i.code == item.code for i in items):
                e.fail(f"項目コード「{item.code}」が重複しています")
            items.append(item)
        if not items:
            e.fail("項目が一つもありません")
        out.append(Edition(dataset, number, valid_from, valid_to, tuple(items)))
    if not out:
        top.fail("版（[[edition]]）が一つもありません")
    return tuple(sorted(out, key=lambda ed: ed.valid_from))


def _load_item(e: _Entry) -> LayoutItem:
    code = e.code("code", ITEM_CODE, "項目コード（英数字・_・-、32文字以内）")
    e = e.named(f"{e.location}（項目 {code}）")
    e.only(
        {
            "code",
            "name",
            "type",
            "required",
            "max_length",
            "minimum",
            "maximum",
            "codes",
            "sensitive",
        }
    )
    name = e.text("name")
    kind = e.choice("type", ITEM_TYPES)
    required = e.optional_boolean("required")
    sensitive = e.optional_boolean("sensitive")
    max_length = e.optional_integer("max_length")
    minimum = e.optional_integer("minimum")
    maximum = e.optional_integer("maximum")
    if max_length is not None:
        if kind not in ("string", "code", "integer"):
            e.fail(f'max_length は type = "{kind}" には使えません')
        if max_length < 1:
            e.fail("max_length は1以上にしてください")
    if (minimum is not None or maximum is not None) and kind not in ("integer", "year"):
        e.fail(f'minimum / maximum は type = "{kind}" には使えません')
    if minimum is not None and maximum is not None and minimum > maximum:
        e.fail(f"minimum（{minimum}）が maximum（{maximum}）より大きくなっています")
    codes: CodeList | None = None
    if kind == "code":
        codes = e.code_list("codes")
        if max_length is not None:
            for key in codes:
                if len(key) > max_length:
                    e.fail(f"コード「{key}」が max_length（{max_length}）を超えています")
    elif "codes" in e.raw:
        e.fail(f'codes は type = "code" の項目にだけ書けます（type = "{kind}"）')
    return LayoutItem(
        code=code,
        name=name,
        type=kind,
        required=required,
        max_length=max_length,
        minimum=minimum,
        maximum=maximum,
        codes=codes,
        sensitive=sensitive,
    )


# ---------------------------------------------------------------------- rules


def _load_rules(
    root: Path,
    kinds: set[str],
    procedures: dict[str, Procedure],
    info_kinds: dict[str, InfoKind],
) -> tuple[Rule, ...]:
    text = _read_text(root, RULES)
    header_seen = False
    rules: list[Rule] = []
    ids: dict[str, int] = {}
    by_key: dict[tuple[str, str, str, str], list[tuple[int, Rule]]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{lineno}行目"

        def fail(problem: str, where: str = where) -> CatalogueError:
            return CatalogueError(RULES, where, problem)

        try:
            cells = next(csv.reader([line], strict=True))
        except csv.Error as exc:
            raise fail(f"CSVとして読めません（{exc}）") from exc
        if not header_seen:
            if tuple(c.strip() for c in cells) != RULE_COLUMNS:
                raise fail(f"見出し行は「{','.join(RULE_COLUMNS)}」でなければなりません")
            header_seen = True
            continue
        if len(cells) != len(RULE_COLUMNS):
            raise fail(f"列の数が{len(cells)}です（{len(RULE_COLUMNS)}列必要）")
        row = dict(zip(RULE_COLUMNS, (c.strip() for c in cells), strict=True))
        rid = row["id"]
        if not RULE_ID.fullmatch(rid):
            raise fail(f"id「{rid}」の形式が誤っています（英数字・_・-、32文字以内）")
        if rid in ids:
            raise fail(f"id「{rid}」が重複しています（{ids[rid]}行目）")
        ids[rid] = lineno
        for column in ("inquirer_kind", "provider_kind"):
            if row[column] not in kinds:
                raise fail(
                    f"{column}「{row[column]}」は {MANIFEST} の organization_kinds にありません"
                )
        pcode = row["procedure_code"]
        if not PROCEDURE_CODE.fullmatch(pcode):
            raise fail(f"procedure_code「{pcode}」の形式が誤っています（JT＋14桁）")
        if pcode not in procedures:
            raise fail(f"事務手続コード「{pcode}」は {AFFAIRS} にありません")
        tcode = row["info_kind_code"]
        if not INFO_KIND_CODE.fullmatch(tcode):
            raise fail(f"info_kind_code「{tcode}」の形式が誤っています（TM＋14桁）")
        if tcode not in info_kinds:
            raise fail(f"特定個人情報名コード「{tcode}」は {INFO_KINDS} にありません")
        valid_from = _csv_date(row["valid_from"], "valid_from", fail)
        if valid_from is None:
            raise fail("valid_from が空です")
        valid_to = _csv_date(row["valid_to"], "valid_to", fail)
        if valid_to is not None and valid_to < valid_from:
            raise fail(f"valid_to（{valid_to}）が valid_from（{valid_from}）より前です")
        if not row["source"]:
            raise fail("source（根拠）が空です")
        rule = Rule(
            id=rid,
            inquirer_kind=row["inquirer_kind"],
            procedure_code=pcode,
            provider_kind=row["provider_kind"],
            info_kind_code=tcode,
            valid_from=valid_from,
            valid_to=valid_to,
            source=row["source"],
        )
        for other_line, other in by_key.get(rule.key, []):
            if _overlaps(other.valid_from, other.valid_to, valid_from, valid_to):
                raise fail(
                    f"規定「{rid}」の有効期間 {format_period(valid_from, valid_to)} が、同じ照会者・"
                    f"事務手続・提供者・特定個人情報の規定「{other.id}」（{other_line}行目）の"
                    f"有効期間 {format_period(other.valid_from, other.valid_to)} と重なっています"
                )
        by_key.setdefault(rule.key, []).append((lineno, rule))
        rules.append(rule)
    if not header_seen:
        raise CatalogueError(RULES, None, "見出し行がありません")
    return tuple(rules)


def _csv_date(value: str, column: str, fail: Callable[[str], CatalogueError]) -> date | None:
    if value == "":
        return None
    if not ISO_DATE.fullmatch(value):
        raise fail(f"{column}「{value}」は YYYY-MM-DD 形式の日付ではありません")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise fail(f"{column}「{value}」は実在しない日付です") from exc


# ---------------------------------------------------------------------- helpers


def _overlaps(a_from: date, a_to: date | None, b_from: date, b_to: date | None) -> bool:
    return (a_to is None or b_from <= a_to) and (b_to is None or a_from <= b_to)


def _read_text(root: Path, rel: str) -> str:
    path = root / rel
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise CatalogueError(rel, None, f"ファイルがありません（{path}）") from exc
    except OSError as exc:
        raise CatalogueError(rel, None, f"ファイルを読めません（{exc}）") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatalogueError(rel, None, f"UTF-8 として読めません（{exc.start}バイト目）") from exc


def _read_toml(root: Path, rel: str) -> dict[str, Any]:
    text = _read_text(root, rel)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message carries "(at line N, column M)".
        raise CatalogueError(rel, None, f"TOML として読めません: {exc}") from exc


def _no_duplicates(file: str, what: str, values: Iterable[str]) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise CatalogueError(file, what, f"「{v}」が重複しています")
        seen.add(v)


def _check_sample(top: _Entry, sample: bool) -> None:
    if "sample" in top.raw:
        value = top.boolean("sample")
        if value != sample:
            top.fail(f"sample = {str(value).lower()} が {MANIFEST} の sample と食い違っています")


class _Entry:
    """One TOML table being read: typed getters that fail with file and entry named."""

    def __init__(self, file: str, location: str | None, raw: object) -> None:
        self.file = file
        self.location = location
        if not isinstance(raw, dict):
            self.fail("表（テーブル）でなければなりません")
        self.raw: dict[str, Any] = raw

    def named(self, location: str) -> _Entry:
        return _Entry(self.file, location, self.raw)

    def fail(self, problem: str) -> NoReturn:
        raise CatalogueError(self.file, self.location, problem)

    def only(self, allowed: set[str]) -> None:
        extra = sorted(set(self.raw) - allowed)
        if extra:
            self.fail(
                f"知らないキー {', '.join(extra)} があります（使えるキー: {', '.join(sorted(allowed))}）"
            )

    def _get(self, key: str) -> Any:
        if key not in self.raw:
            self.fail(f"{key} がありません")
        return self.raw[key]

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{key} は空でない文字列でなければなりません")
        return str(value)

    def optional_text(self, key: str) -> str | None:
        return self.text(key) if key in self.raw else None

    def code(self, key: str, pattern: re.Pattern[str], what: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            self.fail(f"{key}「{value}」は{what}の形式ではありません")
        return str(value)

    def choice(self, key: str, allowed: Iterable[str]) -> str:
        options = tuple(allowed)
        value = self._get(key)
        if value not in options:
            self.fail(f"{key}「{value}」は {' / '.join(options)} のいずれかでなければなりません")
        return str(value)

    def boolean(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            self.fail(f"{key} は true か false でなければなりません")
        return bool(value)

    def optional_boolean(self, key: str) -> bool:
        return self.boolean(key) if key in self.raw else False

    def integer(self, key: str) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{key} は整数でなければなりません")
        return int(value)

    def optional_integer(self, key: str) -> int | None:
        return self.integer(key) if key in self.raw else None

    def day(self, key: str) -> date:
        value = self._get(key)
        if isinstance(value, datetime) or not isinstance(value, date | str):
            self.fail(f"{key} は日付（例 2017-07-18）でなければなりません")
        if isinstance(value, str):
            if not ISO_DATE.fullmatch(value):
                self.fail(f"{key}「{value}」は YYYY-MM-DD 形式の日付ではありません")
            try:
                return date.fromisoformat(value)
            except ValueError:
                self.fail(f"{key}「{value}」は実在しない日付です")
        return value

    def optional_day(self, key: str) -> date | None:
        return self.day(key) if key in self.raw else None

    def list_of_text(self, key: str) -> list[str]:
        value = self._get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.fail(f"{key} は空でない文字列の配列でなければなりません")
        return [str(v) for v in value]

    def tables(self, key: str) -> list[object]:
        value = self.raw.get(key, [])
        if not isinstance(value, list):
            self.fail(f"{key} は表の配列（[[{key}]]）でなければなりません")
        return list(value)

    def code_list(self, key: str) -> CodeList:
        value = self._get(key)
        if not isinstance(value, dict) or not value:
            self.fail(f'{key} は空でないコード表（例 {{ "1" = "課税" }}）でなければなりません')
        pairs: list[tuple[str, str]] = []
        for k, v in value.items():
            if not str(k).strip() or not isinstance(v, str) or not v.strip():
                self.fail(f"{key} のコード「{k}」の名称は空でない文字列でなければなりません")
            pairs.append((str(k), str(v)))
        return CodeList(tuple(pairs))
