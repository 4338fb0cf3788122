"""一括照会 (batch inquiry) files: the request record, its checks, and the result file.

Pure: records in, checked requests and result lines out (the relay itself is
`renkei.atena.flows.inquire_batch`; the command `renkei batch inquire` and the route
``POST /v1/inquiries/batch`` read and write the files). docs/batch-inquiry.md describes
the formats for the people who make the files.

A request file holds 18-field records in `REQUEST_LAYOUT` (REFERENCE.md "Data shapes"),
comma-joined or pure fixed width, UTF-8 or CP932, CRLF or LF (`renkei.core.text.layout`
reads what real clients send); at most `MAX_RECORDS` records a file, as the real
interface splits files every 10,000 records (`request_file_names` names the parts).

Each record is checked on its own (`check_record`): a malformed one becomes a result
row with its error and is never sent; the others are inquired one by one. The file
applies valid records only, with one result row per record in the order of the file:
nothing is ever half done, since one record is one inquiry.

Our choices where the public material is silent ([ours] in the docs): the codes of
番号体系 (``01`` business 宛名番号, ``02`` 統合宛名番号), 照会条件区分/照会年度区分 → the
基準日, the result's status codes other than ``09``/``01``, and the columns after them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Final

from renkei.atena import service
from renkei.catalogue import Catalogue
from renkei.core import ids
from renkei.core.errors import Problem
from renkei.core.text.layout import (
    Encoding,
    Field,
    FileShape,
    Layout,
    RecordError,
    RecordWriter,
    Row,
    Shape,
    format_record,
    read_records,
)

__all__ = [
    "BY_BUSINESS_NO",
    "BY_ATENA_NO",
    "MAX_RECORDS",
    "REQUEST_LAYOUT",
    "BatchRecord",
    "Context",
    "RESULT_COLUMNS",
    "ResultRow",
    "check_record",
    "error_row",
    "parse_request_name",
    "read_request",
    "request_lines",
    "request_file_names",
    "result_file_name",
    "result_row",
    "result_encoding",
    "with_encoding",
    "write_result",
]

MAX_RECORDS: Final = 10_000  # the real interface splits request files every 10,000 records

REQUEST_LAYOUT: Final = Layout(
    "一括照会依頼レコード",
    (
        Field("number_system", "番号体系", 2, "numeric", required=True),
        Field("business_atena_no", "宛名番号", 15, "numeric"),
        Field("atena_no", "統合宛名番号", 15, "numeric"),
        Field("requested_at", "照会依頼日時", 17, "numeric"),
        Field("department", "照会者部署コード", 20, "code"),
        Field("user_id", "照会者ユーザーID", 20, "code"),
        Field("inquirer_org", "照会者機関コード", 16, "numeric", required=True),
        Field("withheld", "照会側不開示コード", 1, "code"),
        Field("affair_code", "事務コード", 16, "code", required=True),
        Field("procedure_code", "事務手続コード", 16, "code", required=True),
        Field("delegating_inquirer_org", "委任元照会者機関コード", 16, "numeric"),
        Field("delegating_provider_org", "委任元提供者機関コード", 16, "numeric"),
        Field("provider_org", "提供者機関コード", 16, "numeric", required=True),
        Field("info_kind_code", "特定個人情報名コード", 16, "code", required=True),
        Field("condition", "照会条件区分", 1, "code"),
        Field("fiscal_year", "照会年度区分", 1, "code"),
        Field("start_date", "照会開始日", 8, "numeric"),
        Field("end_date", "照会終了日", 8, "numeric"),
    ),
)

# 番号体系 [ours]: which number names the person.
BY_BUSINESS_NO: Final = "01"  # 宛名番号 = the business system's own 宛名番号
BY_ATENA_NO: Final = "02"  # 統合宛名番号 (staff of the integrated-addressee system only)
NUMBER_SYSTEMS: Final = {BY_BUSINESS_NO: "業務宛名番号", BY_ATENA_NO: "統合宛名番号"}
# 照会条件区分 [ours]: "" or 1 = 日付指定, 2 = 年度指定 (照会年度区分 0 当年度, 1 前年度).
BY_DATE: Final = "1"
BY_FISCAL_YEAR: Final = "2"
FISCAL_YEARS: Final = {"0": 0, "1": 1}
WITHHELD_CODES: Final = frozenset({"", "0", "1"})

# The result's status columns: 照会ステータス(明細単位) and (特定個人情報名単位).
# 09/01 = normal completion [known]; the others [ours].
DETAIL_DONE: Final = "09"
DETAIL_WAITING: Final = "02"
DETAIL_ERROR: Final = "99"
KIND_ANSWERED: Final = "01"
KIND_NO_DATA: Final = "02"
KIND_PENDING: Final = "03"
KIND_ERROR: Final = "99"
_STATUS: Final = {
    "answered": (DETAIL_DONE, KIND_ANSWERED, "正常終了"),
    "no_data": (DETAIL_DONE, KIND_NO_DATA, "該当なし"),
    "pending": (DETAIL_WAITING, KIND_PENDING, "回答待ち（情報提供者の職員が回答します）"),
}
RESULT_COLUMNS: Final = (
    *(f.label for f in REQUEST_LAYOUT.fields),
    "照会ステータス(明細単位)",
    "照会ステータス(特定個人情報名単位)",
    "処理通番",
    "エラーコード",
    "結果メッセージ",
    "版番号",
)

_NAME = re.compile(r"^P640R110_(\d{14})_(\d{4})\.DAT$", re.IGNORECASE)
_TOKYO_OFFSET: Final = timedelta(hours=9)


@dataclass(frozen=True)
class Context:
    """What a record is checked against: this organization, the business system whose
    宛名番号 the file carries (None: the file may name persons by 統合宛名番号 only), whether
    the caller may see and give 統合宛名番号 (staff of atena: yes; a business system: no),
    and today in Japan (for the default 基準日)."""

    own_org: str
    today: date
    system: str | None = None
    atena_nos_allowed: bool = True


@dataclass(frozen=True)
class BatchRecord:
    """One record of a request file: its line, its fields as read (for the echo), and
    either the inquiry to make or why not."""

    line: int
    values: Mapping[str, str]
    request: service.InquiryRequest | None = None
    error: Problem | None = None


@dataclass(frozen=True)
class ResultRow:
    """One row of the result file."""

    values: Mapping[str, str]  # the request's fields, 統合宛名番号 filled or blanked
    detail_status: str
    kind_status: str
    serial: str = ""
    error_code: str = ""
    message: str = ""
    edition: str = ""
    items: Sequence[str] = field(default_factory=tuple)


def _blank(value: str) -> str:
    """A zero-filled numeric field is how fixed-width files write an empty one."""
    return "" if not value.strip("0") else value


def _err(source: str, line: int, label: str, reason: str, code: str = "bad_record") -> RecordError:
    return RecordError(source, line, label, reason, code=code)


def _date(value: str, source: str, line: int, label: str) -> date | RecordError:
    try:
        return datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        return _err(source, line, label, f"日付（YYYYMMDD）ではありません（{value}）。", "bad_date")


def _as_of(v: Mapping[str, str], ctx: Context, source: str, line: int) -> date | RecordError:
    """The 基準日 of a record (see the module docstring and docs/batch-inquiry.md)."""
    start = end = None
    for name, label in (("start_date", "照会開始日"), ("end_date", "照会終了日")):
        raw = _blank(v.get(name, ""))
        if raw:
            parsed = _date(raw, source, line, label)
            if isinstance(parsed, RecordError):
                return parsed
            if name == "start_date":
                start = parsed
            else:
                end = parsed
    if start is not None and end is not None and end < start:
        return _err(source, line, "照会終了日", "照会終了日が照会開始日より前です。", "bad_period")
    condition = v.get("condition", "")
    if condition in ("", BY_DATE):
        return end or start or ctx.today
    if condition == BY_FISCAL_YEAR:
        back = FISCAL_YEARS.get(v.get("fiscal_year", ""))
        if back is None:
            return _err(source, line, "照会年度区分", "年度指定（照会条件区分 2）では 0（当年度）か 1（前年度）を指定してください。")
        fy = (ctx.today.year if ctx.today.month >= 4 else ctx.today.year - 1) - back
        return min(ctx.today, date(fy + 1, 3, 31))
    return _err(source, line, "照会条件区分", "1（日付指定）か 2（年度指定）を指定してください（空欄は日付指定）。")


def check_record(row: Row, ctx: Context, source: str) -> BatchRecord:
    """A request record's checks beyond its layout: the codes, this organization, the
    number that names the person, the dates. The first failure is the record's error."""
    if not row.ok:
        return BatchRecord(row.line, _echo_cells(row), error=row.errors[0])
    v = row.values
    line = row.line

    def refuse(label: str, reason: str, code: str = "bad_record") -> BatchRecord:
        return BatchRecord(line, v, error=_err(source, line, label, reason, code))

    kind = v["number_system"]
    if kind not in NUMBER_SYSTEMS:
        return refuse("番号体系", "01（業務宛名番号）か 02（統合宛名番号）を指定してください。")
    business_no = _blank(v["business_atena_no"])
    atena_no = _blank(v["atena_no"])
    if atena_no and not ctx.atena_nos_allowed:
        return refuse("統合宛名番号", "業務システムは統合宛名番号を指定できません（空欄にしてください）。")
    if kind == BY_BUSINESS_NO:
        if not business_no:
            return refuse("宛名番号", "番号体系 01 では宛名番号（業務宛名番号）を指定してください。")
        if ctx.system is None:
            return refuse("番号体系", "業務システムが指定されていないため、業務宛名番号で照会できません（--system を指定してください）。")
        problem = ids.check(ids.IdKind.ATENA_NO, business_no)
        if problem is not None:
            return refuse("宛名番号", problem.message, "invalid_business_atena_no")
    else:
        if not ctx.atena_nos_allowed:
            return refuse("番号体系", "業務システムは番号体系 01（業務宛名番号）で照会してください。")
        if not atena_no:
            return refuse("統合宛名番号", "番号体系 02 では統合宛名番号を指定してください。")
    if atena_no:
        problem = ids.check(ids.IdKind.ATENA_NO, atena_no)
        if problem is not None:
            return refuse("統合宛名番号", problem.message, "invalid_atena_no")
    requested_at = _blank(v["requested_at"])
    if requested_at:
        try:
            datetime.strptime(requested_at[:14], "%Y%m%d%H%M%S")
            if len(requested_at) != 17:
                raise ValueError
        except ValueError:
            return refuse("照会依頼日時", "日時（YYYYMMDDhhmmssSSS の17桁）ではありません。", "bad_date")
    for name, label, id_kind, code in (
        ("inquirer_org", "照会者機関コード", ids.IdKind.ORG_CODE, "invalid_org_code"),
        ("affair_code", "事務コード", ids.IdKind.AFFAIR_CODE, "invalid_affair_code"),
        ("procedure_code", "事務手続コード", ids.IdKind.PROCEDURE_CODE, "invalid_procedure_code"),
        ("provider_org", "提供者機関コード", ids.IdKind.ORG_CODE, "invalid_org_code"),
        ("info_kind_code", "特定個人情報名コード", ids.IdKind.INFO_KIND_CODE, "invalid_info_kind_code"),
    ):
        problem = ids.check(id_kind, v[name])
        if problem is not None:
            return refuse(label, problem.message, code)
    if v["inquirer_org"] != ctx.own_org:
        return refuse("照会者機関コード", f"この団体の機関コード（{ctx.own_org}）ではありません。")
    if v["withheld"] not in WITHHELD_CODES:
        return refuse("照会側不開示コード", "0（開示）か 1（不開示）を指定してください（空欄は開示）。")
    for name, label in (("delegating_inquirer_org", "委任元照会者機関コード"), ("delegating_provider_org", "委任元提供者機関コード")):
        if _blank(v[name]):
            return refuse(label, "委任による照会には対応していません（空欄にしてください）。")
    as_of = _as_of(v, ctx, source, line)
    if isinstance(as_of, RecordError):
        return BatchRecord(line, v, error=as_of)
    request = service.InquiryRequest(
        procedure_code=v["procedure_code"],
        info_kind_code=v["info_kind_code"],
        provider_org=v["provider_org"],
        as_of=as_of.isoformat(),
        system=ctx.system if kind == BY_BUSINESS_NO else None,
        business_atena_no=business_no if kind == BY_BUSINESS_NO else None,
        atena_no=atena_no if kind == BY_ATENA_NO else None,
        department=v["department"] or None,
        user_id=v["user_id"] or None,
    )
    return BatchRecord(line, v, request=request)


def affair_mismatch(record: BatchRecord, catalogue: Catalogue, source: str) -> BatchRecord:
    """The record's 事務コード must be the affair of its 事務手続コード (the catalogue's)."""
    if record.request is None:
        return record
    affair = catalogue.affair_of(record.request.procedure_code)
    if affair is None:
        error = _err(
            source, record.line, "事務手続コード",
            f"事務手続「{record.request.procedure_code}」は登録されていません。", "unknown_procedure",
        )  # fmt: skip
    elif affair.code != record.values["affair_code"]:
        error = _err(
            source, record.line, "事務コード",
            f"事務手続「{record.request.procedure_code}」の事務は「{affair.code}」です（{affair.name}）。",
        )  # fmt: skip
    else:
        return record
    return BatchRecord(record.line, record.values, error=error)


def read_request(
    src: Path | bytes, ctx: Context, catalogue: Catalogue, source: str
) -> tuple[FileShape, list[BatchRecord]]:
    """A request file (a path, or its bytes as uploaded), every record checked: the
    file's shape (the result is written in it) and the records in file order.

    Problem 422 ``bad_count`` for a file without a record or with more than
    `MAX_RECORDS` (the whole file refused: nothing is asked)."""
    file = read_records(src, REQUEST_LAYOUT, source=source)
    records: list[BatchRecord] = []
    for row in file:
        if len(records) >= MAX_RECORDS:
            raise Problem(
                422,
                "bad_count",
                f"{source}: 1ファイルの一括照会は{MAX_RECORDS:,}件までです（{MAX_RECORDS:,}件ごとにファイルを分けてください）。",
            )
        records.append(affair_mismatch(check_record(row, ctx, source), catalogue, source))
    if not records:
        raise Problem(422, "bad_count", f"{source}: 一括照会のレコードがありません。")
    return file.shape, records


def _echo_cells(row: Row) -> Mapping[str, str]:
    """The fields of a record that could not be read, as far as they can be echoed: by
    position when the record has the layout's 18 fields, else nothing (the line is named
    in the message)."""
    if len(row.cells) != len(REQUEST_LAYOUT):
        return {}
    out = {}
    for f, cell in zip(REQUEST_LAYOUT.fields, row.cells, strict=True):
        value = cell.rstrip(" ")
        # echo only what fits the field and the comma-joined result (never a separator)
        if len(value.encode("cp932", errors="replace")) <= f.width and not any(c in value for c in ',"\r\n'):
            out[f.name] = value
    return out


# --- results ---------------------------------------------------------------------------


def _echo(values: Mapping[str, str], atena_no: str | None) -> dict[str, str]:
    out = {f.name: values.get(f.name, "") for f in REQUEST_LAYOUT.fields}
    out["atena_no"] = atena_no or ""
    return out


def result_row(
    values: Mapping[str, str],
    result: service.InquiryResult,
    catalogue: Catalogue,
    *,
    show_atena_no: bool,
) -> ResultRow:
    """The row of an inquiry that went through: statuses, serial, then the answer's items
    in the order of its layout edition (empty for an item not answered)."""
    detail, kind, message = _STATUS.get(result.status, (DETAIL_DONE, KIND_ANSWERED, result.status_label))
    items: list[str] = []
    edition = str(result.edition or "")
    if result.values is not None:
        items = layout_items(catalogue, values.get("info_kind_code", ""), edition, result.as_of, result.values)
    return ResultRow(
        values=_echo(values, result.atena_no if show_atena_no else None),
        detail_status=detail,
        kind_status=kind,
        serial=result.serial,
        message=message,
        edition=edition,
        items=items,
    )


def layout_items(
    catalogue: Catalogue, info_kind_code: str, edition: str, as_of: date, values: Mapping[str, str]
) -> list[str]:
    """The answer's values in the order of the layout edition's items; items the layout
    does not know follow in code order (an answer is never cut short)."""
    kind = catalogue.info_kinds.get(info_kind_code)
    order: list[str] = []
    if kind is not None:
        ed = next((e for e in kind.editions if e.edition == edition), None) or kind.edition_on(as_of)
        if ed is not None:
            order = [it.code for it in ed.items]
    order += sorted(set(values) - set(order))
    return [values.get(code, "") for code in order]


def error_row(values: Mapping[str, str], problem: Problem, *, atena_no: str | None = None) -> ResultRow:
    """The row of a record that was refused or failed: its code and Japanese message
    (the network's own words for its refusals, e.g. 「符号エラー（機関別符号未発行）」)."""
    message = problem.title
    if problem.detail and problem.detail not in message and problem.code not in ("bad_record",):
        message = f"{message}（{problem.detail}）"
    return ResultRow(
        values=_echo(values, atena_no),
        detail_status=DETAIL_ERROR,
        kind_status=KIND_ERROR,
        serial=str(problem.extra.get("serial") or ""),
        error_code=problem.code,
        message=message,
    )


RESULT_ENCODINGS: Final[dict[str, Encoding]] = {
    "utf-8": "utf-8", "utf8": "utf-8", "cp932": "cp932", "shift_jis": "cp932", "sjis": "cp932", "windows-31j": "cp932",
}  # fmt: skip


def result_encoding(name: str) -> Encoding:
    """A result encoding a caller names (utf-8 | cp932, a few spellings); Problem 422
    ``unsupported_encoding`` for another."""
    chosen = RESULT_ENCODINGS.get(name.strip().lower().replace("_", "-").replace("shift-jis", "shift_jis"))
    if chosen is None:
        raise Problem(422, "unsupported_encoding", f"文字コード「{name[:20]}」は使えません（utf-8 または cp932）。")
    return chosen


def with_encoding(shape: FileShape, encoding: str | None) -> FileShape:
    """The request's shape with the result's encoding chosen by the caller (None: the request's)."""
    if encoding is None:
        return shape
    chosen = result_encoding(encoding)
    return FileShape(encoding=chosen, bom=shape.bom and chosen == "utf-8", newline=shape.newline, shape=shape.shape)


def write_result(out: IO[bytes], shape: FileShape, rows: Iterable[ResultRow], source: str = "") -> int:
    """The result file: CSV without a header, in the request file's encoding and line
    ends; per row the request's 18 fields (comma-joined, empty fields zero-width), then
    `RESULT_COLUMNS`' status columns and the answer's items. Returns the rows written."""
    writer = RecordWriter(out, encoding=shape.encoding, newline=shape.newline, bom=shape.bom, source=source)
    n = 0
    for row in rows:
        extra = [row.detail_status, row.kind_status, row.serial, row.error_code, row.message, row.edition, *row.items]
        writer.record(REQUEST_LAYOUT, row.values, "comma", extra=extra, extra_labels=RESULT_COLUMNS[18:])
        n += 1
    return n


# --- file names ------------------------------------------------------------------------


def parse_request_name(name: str) -> tuple[datetime, int] | None:
    """(made at, part number) of a name ``P640R110_<YYYYMMDDHHmmss>_<NNNN>.DAT``, or None."""
    m = _NAME.match(name)
    if m is None:
        return None
    try:
        return datetime.strptime(m.group(1), "%Y%m%d%H%M%S"), int(m.group(2))
    except ValueError:
        return None


def request_file_names(made_at: datetime, records: int) -> list[str]:
    """The names of the parts of a request of ``records`` records, split every 10,000:
    ``P640R110_<YYYYMMDDHHmmss>_0001.DAT``, ``…_0002.DAT`` …"""
    parts = max(1, -(-records // MAX_RECORDS))
    stamp = made_at.strftime("%Y%m%d%H%M%S")
    return [f"P640R110_{stamp}_{i:04d}.DAT" for i in range(1, parts + 1)]


def result_file_name(request_name: str) -> str:
    """The result's name beside its request's [ours]: ``<request name without .DAT>_RESULT.csv``."""
    stem = request_name[:-4] if request_name.upper().endswith(".DAT") else request_name
    return f"{stem}_RESULT.csv"


def request_lines(records: Iterable[Mapping[str, str]], shape: Shape = "comma") -> list[str]:
    """Request records as lines (for clients and tests): comma-joined with zero-width
    empty fields, or fixed width."""
    return [format_record(REQUEST_LAYOUT, r, shape) for r in records]


def today_in_japan(now: datetime) -> date:
    """The date in Japan of an aware UTC time (the default 基準日 of a record)."""
    return (now + _TOKYO_OFFSET).date()
