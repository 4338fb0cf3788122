"""The node-to-node contract, written down once: every message type, its path, who may
send it, and the typed bodies of the request and of its reply.

Both ends use the same `MessageType`: the receiver's endpoint (`renkei.core.wire.endpoint`)
parses the request body into ``request`` before any work, and the sender's client
(`PeerClient.send`) parses the reply into ``reply``. A body that does not fit is refused
with the stable code its field names (e.g. ``invalid_atena_no``, ``bad_count``,
``bad_date``): see `parse`.

Every node has keys of its own, and a message's signing key names the sending
organization *and node* (``<機関コード>:<node kind>:sig:<n>``). Each message type says
which kinds of node may send it and from where:

- ``SAME_ORG``: only a node of the receiver's own organization (atena → its chukan);
- ``HUB_ORG``: only the network system itself (the hub's 機関コード in the config);
- ``ANY_ORG``: any registered organization, provided the sending node is of a listed
  kind (the hub additionally checks the organization's registered role where a route
  needs one, e.g. J-LIS for ``acquisition.resolve``).

`NodeRuntime.receive_verified` (the first step of every route of
`renkei.core.wire.endpoint`) refuses, before any work, a message type the receiving node
does not take (400 ``wrong_message_type``) and a sender outside the route's kinds or
scope (403 ``sender_not_allowed``), and a reply is accepted only from the kind of node
the request was addressed to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import Enum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from renkei.core import ids
from renkei.core.errors import Problem

__all__ = [
    "MESSAGE_TYPES",
    "ROUTES",
    "Body",
    "MessageType",
    "Route",
    "Scope",
    "authorize",
    "message_type",
    "parse",
    "parse_reply",
    "responders",
    "route_for",
    "wrong_type",
]

MAX_BATCH = 10_000  # items in one message (acquisitions, copies, deliveries …)
MAX_INQUIRER_FIELD = 20  # 照会者部署コード and 照会者ユーザーID: 20 characters in the 一括照会 layout


class Scope(Enum):
    SAME_ORG = "same_org"
    HUB_ORG = "hub_org"
    ANY_ORG = "any_org"


# --- field types: each refuses with a stable code --------------------------------------


def _text(value: Any) -> Any:
    """Strings only: no number or boolean read as text."""
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value


def _identifier_text(kind: ids.IdKind, code: str) -> Any:
    """Strings only, refused with the identifier's own code: a number or null where an
    identifier belongs is a wrong identifier (e.g. an item of a list of 統合宛名番号),
    said in the words `renkei.core.ids` has for what it reads as."""

    def check(value: Any) -> Any:
        if isinstance(value, str):
            return value
        problem = ids.check(kind, "" if value is None else str(value))
        if problem is None:  # a valid number, but not as a string
            raise Problem(422, code, "番号は数値ではなく文字列で指定してください。", code_detail="not_a_string")
        raise Problem(422, code, problem.message, code_detail=problem.code)

    return BeforeValidator(check)


def _identifier(kind: ids.IdKind, code: str, *, required: str | None = None) -> Any:
    """An identifier checked by `renkei.core.ids`; ``required`` names the field whose
    empty value is refused as missing (``missing_field``) rather than malformed."""

    def check(value: str) -> str:
        if required is not None and value == "":
            raise Problem(422, "missing_field", f"項目「{required}」がありません。")
        problem = ids.check(kind, value)
        if problem is not None:
            raise Problem(422, code, problem.message, code_detail=problem.code)
        return value

    return AfterValidator(check)


def _iso_date(label: str, *, required: str | None = None) -> Any:
    def check(value: Any) -> date:
        if type(value) is date:  # a body built by the sender from its own values
            return value
        if required is not None and value == "":
            raise Problem(422, "missing_field", f"項目「{required}」がありません。")
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise Problem(422, "bad_date", f"{label}の日付形式が誤っています（YYYY-MM-DD）。", str(value)[:40])

    return BeforeValidator(check)


_SERIAL = re.compile(r"^[0-9]{20}$")


def _serial(value: Any) -> str:
    if not (isinstance(value, str) and value.isascii() and _SERIAL.match(value)):
        raise Problem(422, "invalid_serial", "処理通番の形式が誤っています（20桁の数字）。")
    return value


def _inquirer(label: str) -> Any:
    """An optional inquirer field (who asked, inside the inquiring organization): None, or
    1–20 printable ASCII characters without surrounding spaces."""

    def check(value: Any) -> Any:
        if value is None:
            return None
        if (
            isinstance(value, str)
            and 0 < len(value) <= MAX_INQUIRER_FIELD
            and value.isascii()
            and value.isprintable()
            and value.strip() == value
        ):
            return value
        raise Problem(
            422, "bad_inquirer", f"{label}は半角英数字・記号の{MAX_INQUIRER_FIELD}文字以内で指定してください。"
        )

    return BeforeValidator(check)


Text = Annotated[str, BeforeValidator(_text)]
# Who asked, as the inquiring organization names them (the 一括照会 record's fields); kept
# in the provision records of the inquirer's chukan and of the hub, never sent to the provider.
InquirerDepartment = Annotated[str | None, _inquirer("照会者部署コード")]
InquirerUser = Annotated[str | None, _inquirer("照会者ユーザーID")]
NonEmpty = Annotated[str, BeforeValidator(_text), Field(min_length=1)]
AtenaNo = Annotated[
    str, _identifier_text(ids.IdKind.ATENA_NO, "invalid_atena_no"), _identifier(ids.IdKind.ATENA_NO, "invalid_atena_no")
]
ProcedureCode = Annotated[
    str, BeforeValidator(_text), _identifier(ids.IdKind.PROCEDURE_CODE, "invalid_procedure_code")
]
InfoKindCode = Annotated[
    str, BeforeValidator(_text), _identifier(ids.IdKind.INFO_KIND_CODE, "invalid_info_kind_code")
]
AsOf = Annotated[date, _iso_date("基準日")]
Serial = Annotated[str, BeforeValidator(_serial)]


@dataclass(frozen=True)
class Refuse:
    """How a field refuses what does not fit: ``code`` (and its Japanese ``title``) for a
    wrong type or shape, ``count`` for a list of the wrong length."""

    code: str
    title: str
    count: str | None = None
    count_title: str | None = None


def _items(title: str, *, min_items: int = 0) -> Refuse:
    return Refuse(
        "bad_items",
        title,
        "bad_count",
        f"一度に{MAX_BATCH:,}件まで" + ("、1件以上" if min_items else "") + "で指定してください。",
    )


class Body(BaseModel):
    """A message body: fields checked strictly, unknown fields ignored, immutable."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    def dump(self) -> dict[str, Any]:
        """The body as JSON-ready values (dates as YYYY-MM-DD)."""
        return self.model_dump(mode="json")


class Empty(Body):
    pass


# --- hub ------------------------------------------------------------------------------


class RegistryList(Body):
    organizations: list[dict[str, Any]]


class AcquisitionCreate(Body):
    count: Annotated[int, Refuse("bad_count", "件数（count）を整数で指定してください。")]


class AcquisitionCreated(Body):
    acquisition_nos: list[Text]


class ResolveItem(Body):
    """One acquisition J-LIS resolved; checked item by item by the hub (a status each)."""

    acquisition_no: Text = ""
    resident_code: Text = ""
    org_code: Text = ""


class AcquisitionResolve(Body):
    items: Annotated[
        list[ResolveItem], Field(max_length=MAX_BATCH), _items("items を配列で指定してください。")
    ]


class ItemStatus(Body):
    acquisition_no: Text
    status: Text


class ItemStatuses(Body):
    results: list[ItemStatus]


class _NamesInquirer(Body):
    """A body with the optional inquirer fields, sent only when given (a peer that does
    not know them sees the same body as before)."""

    def dump(self) -> dict[str, Any]:
        out = super().dump()
        for name in ("inquirer_department", "inquirer_user"):
            if out.get(name) is None:
                out.pop(name, None)
        return out


class HubInquiry(_NamesInquirer):
    """A chukan asks the hub, naming the person by its own pseudonym."""

    pseudonym: Annotated[NonEmpty, Refuse("missing_field", "項目「pseudonym」がありません。")]
    provider_org: Annotated[NonEmpty, Refuse("missing_field", "項目「provider_org」がありません。")]
    procedure_code: Annotated[
        str,
        BeforeValidator(_text),
        _identifier(ids.IdKind.PROCEDURE_CODE, "invalid_procedure_code", required="procedure_code"),
        Refuse("missing_field", "項目「procedure_code」がありません。"),
    ]
    info_kind_code: Annotated[
        str,
        BeforeValidator(_text),
        _identifier(ids.IdKind.INFO_KIND_CODE, "invalid_info_kind_code", required="info_kind_code"),
        Refuse("missing_field", "項目「info_kind_code」がありません。"),
    ]
    as_of: Annotated[date, _iso_date("基準日", required="as_of"), Refuse("missing_field", "項目「as_of」がありません。")]
    inquirer_department: InquirerDepartment = None
    inquirer_user: InquirerUser = None


def _serial_or_none(value: Any) -> Any:
    return value if isinstance(value, str) and value.isascii() and _SERIAL.match(value) else None


def _text_or_none(value: Any) -> Any:
    return value if isinstance(value, str) else None


class RelayedAnswer(Body):
    """The serial, the outcome, and the provider's answer as opaque bytes (a JWE for the
    inquirer's chukan: the hub cannot read it); the provider's reply to the hub and the
    hub's to the inquirer.

    Read without refusal: a serial that is not one of the hub's (20 digits) is None, a
    status or an answer that is no string is None. The receiver judges them in its own
    terms: the asking chukan keeps a bad answer under its serial as ``bad_answer`` with
    a reason (``bad_status``, ``no_answer`` …), a reply without a serial as
    ``bad_peer_response`` (``bad_serial``); the hub records a status it does not know as
    an error.
    """

    serial: Annotated[str | None, BeforeValidator(_serial_or_none)] = None
    status: Annotated[str | None, BeforeValidator(_text_or_none)] = None
    answer: Annotated[str | None, BeforeValidator(_text_or_none)] = None


# --- chukan ---------------------------------------------------------------------------


class AtenaNos(Body):
    atena_nos: Annotated[
        list[AtenaNo],
        Field(max_length=MAX_BATCH),
        _items("atena_nos を配列で指定してください。"),
    ]


class AcquisitionPair(Body):
    atena_no: Text
    acquisition_no: Text


class Acquiring(Body):
    items: list[AcquisitionPair]


class Delivery(Body):
    acquisition_no: Text = ""
    pseudonym: Text = ""


class PseudonymDeliver(Body):
    items: Annotated[
        list[Delivery], Field(max_length=MAX_BATCH), _items("items を配列で指定してください。")
    ]


class Delivered(Body):
    bound: int = 0
    unchanged: int = 0
    unknown_acquisition: int = 0
    conflict: int = 0


class Bound(Body):
    bound: list[Text]


class FukuhonRegister(Body):
    """Copies to register; each is checked against its layout by the chukan, and every
    invalid one is named (so a record's own shape is not refused here)."""

    records: Annotated[
        list[Any], Field(max_length=MAX_BATCH), _items("records を配列で指定してください。")
    ]


class FukuhonRegistered(Body):
    registered: int
    versions: list[int]
    added: int = 0  # of them new versions (the others said what was already held)


class ChukanInquiry(_NamesInquirer):
    """atena asks its chukan, naming the person by the 統合宛名番号."""

    atena_no: Annotated[AtenaNo, Refuse("invalid_atena_no", "統合宛名番号を指定してください。")]
    provider_org: Annotated[NonEmpty, Refuse("missing_field", "項目「provider_org」がありません。")]
    procedure_code: Annotated[ProcedureCode, Refuse("missing_field", "項目「procedure_code」がありません。")]
    info_kind_code: Annotated[InfoKindCode, Refuse("missing_field", "項目「info_kind_code」がありません。")]
    as_of: Annotated[AsOf, Refuse("bad_date", "基準日の日付形式が誤っています（YYYY-MM-DD）。")]
    inquirer_department: InquirerDepartment = None
    inquirer_user: InquirerUser = None


class AnswerContent(Body):
    """What an answer carries besides serial and status: for 回答あり the edition, record
    key, values and publication period (``valid_to`` null for an open end); nothing at
    all for 該当なし and 回答待ち."""

    edition: Text | None = None
    record_key: Text | None = None
    values: dict[str, str] | None = None
    valid_from: Text | None = None
    valid_to: Text | None = None

    def dump(self) -> dict[str, Any]:
        """Only the fields given: an answer without content carries no content fields
        (not nulls), an open ``valid_to`` is given as null."""
        return self.model_dump(mode="json", exclude_unset=True)


class InquiryResult(AnswerContent):
    serial: Text
    status: Text


class ProvisionRequest(Body):
    """The hub asks the provider's chukan, naming the person by the provider's pseudonym."""

    serial: Annotated[Serial, Refuse("invalid_serial", "処理通番の形式が誤っています（20桁の数字）。")]
    pseudonym: Text = ""
    inquirer_org: Annotated[NonEmpty, Refuse("missing_field", "項目「inquirer_org」がありません。")]
    procedure_code: Annotated[ProcedureCode, Refuse("missing_field", "項目「procedure_code」がありません。")]
    info_kind_code: Annotated[InfoKindCode, Refuse("missing_field", "項目「info_kind_code」がありません。")]
    as_of: Annotated[AsOf, Refuse("bad_date", "基準日の日付形式が誤っています（YYYY-MM-DD）。")]


class ProvisionAnswer(AnswerContent):
    """The provider's answer, signed by its chukan and encrypted for the inquirer's (the
    body of the inner ``provision.answer`` message the hub relays unread)."""

    serial: Text
    status: Text
    info_kind_code: Text
    as_of: Text


# --- jlis -----------------------------------------------------------------------------


class SubmitItem(Body):
    """(individual number, acquisition number); checked item by item (a status each)."""

    individual_number: Text = ""
    acquisition_no: Text = ""


class AcquisitionSubmit(Body):
    items: Annotated[
        list[SubmitItem], Field(max_length=MAX_BATCH), _items("items を配列で指定してください。")
    ]


_IDENTITY_TITLE = "基本4情報（氏名・生年月日・性別・住所）と事務コードを指定してください。"
_IDENTITY_FIELD = Refuse("bad_identity_query", _IDENTITY_TITLE)
IdentityText = Annotated[str, BeforeValidator(_text), Field(min_length=1, max_length=300), _IDENTITY_FIELD]


class IdentitySearch(Body):
    """本人確認情報の検索: a person by 基本4情報, for an affair that may use the individual
    number (番号利用事務; atena checks, J-LIS records the affair named). Every field is
    needed: a search on fewer facts would guess."""

    affair_code: Annotated[
        str, BeforeValidator(_text), _identifier(ids.IdKind.AFFAIR_CODE, "invalid_affair_code"), _IDENTITY_FIELD
    ]
    family_name: IdentityText
    given_name: IdentityText
    birth_date: Annotated[date, _iso_date("生年月日"), _IDENTITY_FIELD]
    sex: Annotated[str, BeforeValidator(_text), Field(pattern="^[129]$"), _IDENTITY_FIELD]
    address: IdentityText


IDENTITY_STATUSES = ("found", "not_found", "multiple")


class IdentityFound(Body):
    """J-LIS's answer: ``found`` with the one person's individual number, or
    ``not_found`` / ``multiple`` (with how many matched) and no number — never a guess."""

    status: Text
    matches: int
    individual_number: Text | None = None
    message: Text = ""


# --- tsa --------------------------------------------------------------------------------
# The time-stamp authority's bodies (renkei.core.audit.timestamping says what they mean).
# A request that does not fit is refused as ``bad_stamp_request`` (a page as ``bad_page``)
# with the authority's own Japanese words for each field.

STAMP_KINDS: frozenset[str] = frozenset(("audit_checkpoint", "evidence_batch"))
STAMPS_PAGE = 10_000  # heads in one page of ``tsa.stamps.list``
_MAX_SEQ = 2**62
_NODE_ID = re.compile(r"([0-9]{16})/([a-z]{2,16})")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_STAMP_TITLE = "タイムスタンプの依頼の内容が誤っています。"
_PAGE_TITLE = f"after は0以上、limit は1〜{STAMPS_PAGE:,}の整数で指定してください。"


def _bad_stamp(detail: str) -> Problem:
    return Problem(422, "bad_stamp_request", _STAMP_TITLE, detail)


def _node_id(value: Any) -> str:
    """``<機関コード>/<node kind>``: how the authority names a node."""
    if not isinstance(value, str) or not _NODE_ID.fullmatch(value):
        raise _bad_stamp("node は「機関コード16桁/ノード種別」で指定してください。")
    if ids.check(ids.IdKind.ORG_CODE, value.split("/", 1)[0]) is not None:
        raise _bad_stamp("node の機関コードが誤っています。")
    return value


def _stamp_kind(value: Any) -> str:
    if not isinstance(value, str) or value not in STAMP_KINDS:  # a list or an object is not hashable
        raise _bad_stamp(f"kind は {', '.join(sorted(STAMP_KINDS))} のいずれかです。")
    return value


def _stamp_seq(value: Any) -> int:
    if type(value) is not int or not 0 < value < _MAX_SEQ:  # a boolean is no number here
        raise _bad_stamp("seq は正の整数で指定してください。")
    return value


def _stamp_hash(value: Any) -> str:
    if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value):
        raise _bad_stamp("hash は SHA-256（16進64文字）で指定してください。")
    return value


def _signed_at(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 40:
        raise _bad_stamp("at（署名時刻）を指定してください。")
    return value


def _submitter_token(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 4096:
        raise _bad_stamp("token（依頼元の署名）を指定してください。")
    return value


def _page_number(least: int, most: int | None = None) -> Any:
    def check(value: Any) -> int:
        if type(value) is not int or value < least or (most is not None and value > most):
            raise Problem(422, "bad_page", _PAGE_TITLE)
        return value

    return BeforeValidator(check)


def _pair(value: Any) -> Any:
    """A [seq, hash] pair as JSON carries it (a list), read as a tuple."""
    return tuple(value) if isinstance(value, list) else value


_MISSING_STAMP_FIELD = Refuse("bad_stamp_request", _STAMP_TITLE)
NodeId = Annotated[str, BeforeValidator(_node_id), _MISSING_STAMP_FIELD]
StampKind = Annotated[str, BeforeValidator(_stamp_kind), _MISSING_STAMP_FIELD]


class TsaStamp(Body):
    """A head to countersign: node ``node``'s sequence of ``kind`` reached ``seq`` with
    ``hash``; ``token`` is the node's own JWS over {seq, hash, at} (for an audit
    checkpoint, the checkpoint's signature itself). Checked for form only here; the
    authority node checks the signature."""

    node: NodeId
    kind: StampKind
    seq: Annotated[int, BeforeValidator(_stamp_seq), _MISSING_STAMP_FIELD]
    hash: Annotated[str, BeforeValidator(_stamp_hash), _MISSING_STAMP_FIELD]
    at: Annotated[str, BeforeValidator(_signed_at), _MISSING_STAMP_FIELD]
    token: Annotated[str, BeforeValidator(_submitter_token), _MISSING_STAMP_FIELD]

    @property
    def org_code(self) -> str:
        return self.node.split("/", 1)[0]


class TsaStamped(Body):
    """The authority's receipt (a compact JWS, renkei.core.audit.timestamping)."""

    receipt: Text


class TsaHeadQuery(Body):
    """A node asks for the newest head the authority stamped of its own records."""

    node: NodeId
    kind: StampKind


class TsaHead(Body):
    """The newest head of (node, kind) with its receipt; ``seq`` 0 and no receipt if
    nothing was stamped yet. Believed only as far as the receipt proves it."""

    node: Text
    kind: Text
    seq: int
    hash: Text | None = None
    stamped_at: Text | None = None
    receipt: Text | None = None


class TsaStampsQuery(Body):
    """One page of every head stamped of the sender's own node, after seq ``after``."""

    node: NodeId
    kind: StampKind
    after: Annotated[int, _page_number(0)] = 0
    limit: Annotated[int, _page_number(1, STAMPS_PAGE)] = STAMPS_PAGE


class TsaStampsList(Body):
    node: Text
    kind: Text
    stamps: list[Annotated[tuple[int, Text], BeforeValidator(_pair)]]
    more: bool


# --- the message types ----------------------------------------------------------------

Req = TypeVar("Req", bound=Body)
Rep = TypeVar("Rep", bound=Body)

_ALL_NODES = frozenset({"atena", "chukan", "hub", "jlis", "portal", "tsa"})


@dataclass(frozen=True)
class MessageType(Generic[Req, Rep]):
    """One node-to-node exchange: ``typ`` sent to ``receiver`` at ``path`` by the listed
    node kinds, with a ``request`` body, answered with ``reply_typ`` and a ``reply`` body."""

    receiver: str
    typ: str
    path: str
    senders: frozenset[str]
    scope: Scope
    title: str  # Japanese name, for refusals and documentation
    request: type[Req]
    reply_typ: str
    reply: type[Rep]
    # Small interactive messages that concurrent callers may share one envelope for (see
    # "batches" below); bulk messages (chunks of thousands of items) never are.
    batchable: bool = False
    # The body field whose value separates envelopes: an inquiry travels only with
    # inquiries to the same provider, so that a provider that answers slowly (or not at
    # all, until the timeout) holds back no inquiry to another.
    batch_by: str | None = None


def _mt(
    receiver: str,
    typ: str,
    path: str,
    senders: set[str] | frozenset[str],
    scope: Scope,
    title: str,
    request: type[Req],
    reply_typ: str,
    reply: type[Rep],
    *,
    batchable: bool = False,
    batch_by: str | None = None,
) -> MessageType[Req, Rep]:
    if batch_by is not None and batch_by not in request.model_fields:  # pragma: no cover
        raise RuntimeError(f"contract: {typ} is batched by {batch_by}, which its body lacks")
    return MessageType(
        receiver, typ, path, frozenset(senders), scope, title, request, reply_typ, reply, batchable, batch_by
    )


# hub — 情報提供ネットワークシステム
REGISTRY_QUERY = _mt(
    "hub", "registry.query", "/v1/registry", _ALL_NODES, Scope.ANY_ORG, "機関登録簿の照会",
    Empty, "registry.list", RegistryList,
)  # fmt: skip
ACQUISITION_CREATE = _mt(
    "hub", "acquisition.create", "/v1/acquisitions", {"chukan"}, Scope.ANY_ORG, "取得番号の払出し",
    AcquisitionCreate, "acquisition.created", AcquisitionCreated,
)  # fmt: skip
ACQUISITION_RESOLVE = _mt(
    "hub", "acquisition.resolve", "/v1/acquisitions/resolve", {"jlis"}, Scope.ANY_ORG, "符号生成依頼",
    AcquisitionResolve, "acquisition.resolved", ItemStatuses,
)  # fmt: skip
HUB_INQUIRY = _mt(
    "hub", "inquiry.request", "/v1/inquiries", {"chukan"}, Scope.ANY_ORG, "情報照会",
    HubInquiry, "inquiry.answer", RelayedAnswer, batchable=True, batch_by="provider_org",
)  # fmt: skip
# chukan — 自治体中間サーバー
PSEUDONYM_ACQUIRE = _mt(
    "chukan", "pseudonym.acquire", "/v1/acquisitions", {"atena"}, Scope.SAME_ORG, "符号取得の開始",
    AtenaNos, "pseudonym.acquiring", Acquiring,
)  # fmt: skip
PSEUDONYM_DELIVER = _mt(
    "chukan", "pseudonym.deliver", "/v1/acquisitions/deliver", {"hub"}, Scope.HUB_ORG, "符号の通知",
    PseudonymDeliver, "pseudonym.delivered", Delivered,
)  # fmt: skip
PSEUDONYM_STATUS = _mt(
    "chukan", "pseudonym.status", "/v1/acquisitions/status", {"atena"}, Scope.SAME_ORG, "符号取得状況",
    AtenaNos, "pseudonym.status", Bound,
)  # fmt: skip
FUKUHON_REGISTER = _mt(
    "chukan", "fukuhon.register", "/v1/fukuhon", {"atena"}, Scope.SAME_ORG, "副本登録",
    FukuhonRegister, "fukuhon.registered", FukuhonRegistered,
)  # fmt: skip
CHUKAN_INQUIRY = _mt(
    "chukan", "inquiry.start", "/v1/inquiries", {"atena"}, Scope.SAME_ORG, "情報照会の依頼",
    ChukanInquiry, "inquiry.result", InquiryResult, batchable=True, batch_by="provider_org",
)  # fmt: skip
PROVISION_REQUEST = _mt(
    "chukan", "provision.request", "/v1/provisions", {"hub"}, Scope.HUB_ORG, "情報提供の依頼",
    ProvisionRequest, "provision.relayed", RelayedAnswer, batchable=True,
)  # fmt: skip
# jlis — J-LIS
ACQUISITION_SUBMIT = _mt(
    "jlis", "acquisition.submit", "/v1/acquisitions", {"atena"}, Scope.ANY_ORG, "符号取得の依頼",
    AcquisitionSubmit, "acquisition.submitted", ItemStatuses,
)  # fmt: skip
IDENTITY_SEARCH = _mt(
    "jlis", "identity.search", "/v1/identities/search", {"atena"}, Scope.ANY_ORG, "本人確認情報の検索（基本4情報）",
    IdentitySearch, "identity.found", IdentityFound, batchable=True,
)  # fmt: skip
# tsa — the time-stamp authority: every node stamps and asks about its own heads (the
# authority then checks the head named is the sending node's own).
TSA_STAMP = _mt(
    "tsa", "tsa.stamp", "/v1/stamps", _ALL_NODES - {"tsa"}, Scope.ANY_ORG, "タイムスタンプの付与",
    TsaStamp, "tsa.stamped", TsaStamped,
)  # fmt: skip
TSA_HEAD = _mt(
    "tsa", "tsa.head", "/v1/heads", _ALL_NODES - {"tsa"}, Scope.ANY_ORG, "最新の記録の先頭の照会",
    TsaHeadQuery, "tsa.head.current", TsaHead,
)  # fmt: skip
TSA_STAMPS = _mt(
    "tsa", "tsa.stamps", "/v1/stamps/list", _ALL_NODES - {"tsa"}, Scope.ANY_ORG, "記録の先頭の一覧",
    TsaStampsQuery, "tsa.stamps.list", TsaStampsList,
)  # fmt: skip

MESSAGE_TYPES: tuple[MessageType[Any, Any], ...] = (
    REGISTRY_QUERY, ACQUISITION_CREATE, ACQUISITION_RESOLVE, HUB_INQUIRY,
    PSEUDONYM_ACQUIRE, PSEUDONYM_DELIVER, PSEUDONYM_STATUS, FUKUHON_REGISTER, CHUKAN_INQUIRY,
    PROVISION_REQUEST, ACQUISITION_SUBMIT, IDENTITY_SEARCH, TSA_STAMP, TSA_HEAD, TSA_STAMPS,
)  # fmt: skip
# The provider's answer inside the JWE is a signed message too, not sent to a route.
PROVISION_ANSWER_TYP = "provision.answer"

# The routing view of the table (kept for readers of the older name).
Route = MessageType
ROUTES = MESSAGE_TYPES

_BY_KEY: dict[tuple[str, str], MessageType[Any, Any]] = {(m.receiver, m.typ): m for m in MESSAGE_TYPES}
_BY_TYP: dict[str, MessageType[Any, Any]] = {m.typ: m for m in MESSAGE_TYPES}
if len(_BY_KEY) != len(MESSAGE_TYPES) or len(_BY_TYP) != len(MESSAGE_TYPES):  # pragma: no cover
    raise RuntimeError("contract: a message type is listed twice")

_NODE_NAMES = {
    "atena": "団体内統合宛名システム",
    "chukan": "中間サーバー",
    "hub": "情報提供ネットワークシステム",
    "jlis": "J-LIS",
    "portal": "ポータル",
    "tsa": "タイムスタンプ局",
}


def route_for(receiver: str, typ: str) -> MessageType[Any, Any] | None:
    return _BY_KEY.get((receiver, typ))


def message_type(typ: str) -> MessageType[Any, Any] | None:
    return _BY_TYP.get(typ)


def responders(typ: str) -> frozenset[str]:
    """The node kinds that serve requests of type ``typ``: a reply must be signed by one."""
    return frozenset(m.receiver for m in MESSAGE_TYPES if m.typ == typ)


def wrong_type(typ: str) -> Problem:
    return Problem(400, "wrong_message_type", "この窓口では受け付けない電文種別です。", typ)


def authorize(
    *,
    receiver: str,
    receiver_org: str,
    hub_org: str,
    typ: str,
    sender_org: str,
    sender_node: str,
) -> MessageType[Any, Any]:
    """The message type a verified message may be, or a Problem saying why it may not.

    Refuses in this order: a type the receiving node does not take; a sending node of
    a kind the route does not admit; a sender outside the route's organizations.
    """
    route = route_for(receiver, typ)
    if route is None:
        raise wrong_type(typ)
    if sender_node not in route.senders:
        allowed = "、".join(_NODE_NAMES.get(k, k) for k in sorted(route.senders))
        raise Problem(
            403,
            "sender_not_allowed",
            f"「{route.title}」は{allowed}からのみ受け付けます"
            f"（送信元: {_NODE_NAMES.get(sender_node, sender_node or '不明')}）。",
            f"{sender_org}:{sender_node} → {receiver}:{typ}",
        )
    if route.scope is Scope.SAME_ORG and sender_org != receiver_org:
        raise Problem(
            403,
            "sender_not_allowed",
            f"「{route.title}」は同じ機関のノードからのみ受け付けます。",
            f"{sender_org}:{sender_node} → {receiver_org}:{receiver}:{typ}",
        )
    if route.scope is Scope.HUB_ORG and sender_org != hub_org:
        raise Problem(
            403,
            "sender_not_allowed",
            f"「{route.title}」は情報提供ネットワークシステムからのみ受け付けます。",
            f"{sender_org}:{sender_node} → {receiver}:{typ}",
        )
    return route


# --- parsing --------------------------------------------------------------------------


def _refusal(model: type[Body], exc: ValidationError) -> Problem:
    """The Problem for the first error of a body (in field order, a missing field first)."""
    errors = exc.errors(include_url=False)
    errors.sort(key=lambda e: (e["type"] != "missing", _field_index(model, e["loc"])))
    err = errors[0]
    loc = err["loc"]
    name = str(loc[0]) if loc else ""
    where = ".".join(str(p) for p in loc)
    info = model.model_fields.get(name)
    refuse = next((m for m in (info.metadata if info else ()) if isinstance(m, Refuse)), None)
    if err["type"] == "missing" and len(loc) == 1:
        if refuse is not None:  # a field that refuses in its own terms refuses its absence too
            return Problem(422, refuse.code, refuse.title)
        return Problem(422, "missing_field", f"項目「{name}」がありません。")
    if refuse is not None:
        if err["type"] in ("too_long", "too_short") and len(loc) == 1 and refuse.count:
            return Problem(422, refuse.count, refuse.count_title or refuse.title, where)
        return Problem(422, refuse.code, refuse.title, where)
    return Problem(422, "invalid_request", f"項目「{where or name}」の形式が誤っています。", err["msg"])


def _field_index(model: type[Body], loc: tuple[Any, ...]) -> int:
    names = list(model.model_fields)
    return names.index(loc[0]) if loc and loc[0] in names else len(names)


def parse(model: type[Req], data: Any) -> Req:
    """The body as ``model``, or a Problem (422 with the field's stable code).

    Field validators raise their own Problem (e.g. ``invalid_atena_no`` with the
    identifier's Japanese reason), which passes through unchanged.
    """
    if not isinstance(data, dict):
        raise Problem(400, "malformed_message", "電文の形式が誤っています。")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _refusal(model, exc) from None


def parse_reply(model: type[Rep], data: Any, source: str) -> Rep:
    """A peer's reply body as ``model``; one that does not fit is the peer's fault (502)."""
    try:
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return model.model_validate(data)
    except (ValidationError, ValueError, Problem) as exc:
        raise Problem(
            502,
            "bad_peer_response",
            "連携先の応答を検証できません。",
            f"{source}: {type(exc).__name__}",
            reason_code="bad_reply_body",
        ) from None


# --- batches: several messages in one envelope -------------------------------------------
#
# A sender with several messages of `batchable` types under way to the same node at once
# may seal them together: ONE signed message of type ``batch`` to ``BATCH_PATH``, whose
# body is ``{"messages": [{"id", "typ", "body"}, …]}``. Each item is a message of its own
# with the envelope's ``iss``, ``aud`` and ``iat``: it is authorized by the table above
# (its type, the sending node's kind and organization), screened, kept against replay by
# its own id and handled by its type's route, exactly as if it had come alone. The
# receiver answers ONE signed ``batch.replies`` message, ``{"replies": [{"id", "status",
# "typ", "body"} or {"id", "status", "problem"}, …]}`` in the order of the items: each
# item's reply or its refusal (problem+json), so one refused item fails alone. The
# signature, TLS, HTTP and verification costs are paid once per envelope instead of once
# per message — the largest part of a hop's cost for small messages.

BATCH_TYP = "batch"
BATCH_REPLY_TYP = "batch.replies"
BATCH_PATH = "/v1/messages/batch"
MAX_BATCH_MESSAGES = 64


@dataclass(frozen=True)
class BatchItem:
    """One message of a batch: its own id, type and body."""

    id: str
    typ: str
    body: dict[str, Any]


def parse_batch(body: Any) -> list[BatchItem]:
    """The items of a batch's body, or a Problem for the whole batch (nothing handled)."""
    items = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise Problem(400, "malformed_message", "一括電文の形式が誤っています（messages がありません）。")
    if len(items) > MAX_BATCH_MESSAGES:
        raise Problem(
            422, "bad_count", f"一括電文の件数が上限（{MAX_BATCH_MESSAGES}件）を超えています。", str(len(items))
        )
    out: list[BatchItem] = []
    for item in items:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("id"), str)
            or not isinstance(item.get("typ"), str)
            or not isinstance(item.get("body"), dict)
        ):
            raise Problem(400, "malformed_message", "一括電文の形式が誤っています（各電文に id, typ, body が必要です）。")
        out.append(BatchItem(item["id"], item["typ"], item["body"]))
    return out


def parse_batch_replies(body: Any, ids: list[str], source: str) -> list[dict[str, Any]]:
    """The replies of a batch, one per item in order; a reply that does not match the items
    sent (count, order, ids, shape) is the peer's fault: 502 ``bad_peer_response``."""
    replies = body.get("replies") if isinstance(body, dict) else None
    ok = isinstance(replies, list) and len(replies) == len(ids)
    if ok:
        assert isinstance(replies, list)
        for sent, reply in zip(ids, replies, strict=True):
            if (
                not isinstance(reply, dict)
                or reply.get("id") != sent
                or not isinstance(reply.get("status"), int)
                or isinstance(reply.get("status"), bool)
            ):
                ok = False
                break
    if not ok:
        raise Problem(
            502,
            "bad_peer_response",
            "連携先の応答を検証できません。",
            f"{source}: the replies do not match the messages sent",
            reason_code="bad_batch_replies",
        )
    assert isinstance(replies, list)
    return replies
