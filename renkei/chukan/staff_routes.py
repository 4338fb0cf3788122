"""Staff routes of the intermediate server beyond the common ones (renkei.staff.routes).

- ``GET /v1/provision-records?atena_no=…``: one person's 情報提供等の記録 here, only
  those of the affairs the staff member holds ``<affair>:参照`` for; audited, and
  counted by the abnormal-traffic guard as a lookup of that person;
- the export kind ``provision_records`` (role 監査, a period): every record of the
  period as JSON Lines, through the approval flow of renkei.staff.exports.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import IO, Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session

from renkei.catalogue import Catalogue
from renkei.chukan import service
from renkei.core.errors import Problem
from renkei.staff.auth import StaffPrincipal
from renkei.staff.export_kinds import parse_period, period_bounds
from renkei.staff.exports import EXPORT_ROLES, ExportKind
from renkei.staff.routes import Done, StaffAccess, audit_refusal, audited, screen_staff

VIEW_ACTION = "provision_records.view"


class RecordOut(BaseModel):
    serial: str
    direction: str
    at: datetime
    counterpart_org: str
    procedure_code: str
    affair_code: str
    info_kind_code: str
    as_of: str
    outcome: str


class RecordsOut(BaseModel):
    atena_no: str
    affairs: list[str]
    records: list[RecordOut]


def provision_records_export() -> ExportKind:
    """Every provision record of a period as JSON Lines (role 監査)."""

    def count(session: Session, params: Mapping[str, Any]) -> int:
        return service.count_provision_records(session, *period_bounds(params))

    def write(session: Session, params: Mapping[str, Any], out: IO[str]) -> int:
        return service.write_provision_records(session, *period_bounds(params), out)

    return ExportKind(
        name="provision_records",
        role=EXPORT_ROLES["provision_records"],
        label="情報提供等の記録",
        format="jsonl",
        parse_params=parse_period,
        count=count,
        write=write,
    )


def staff_routes(access: StaffAccess) -> APIRouter:
    router = APIRouter()
    # The guard is applied in the route, with the person looked up.
    viewing = Depends(access.staff(VIEW_ACTION, screen=False))

    @router.get(
        "/v1/provision-records",
        response_model=RecordsOut,
        tags=["情報提供等の記録"],
        summary="情報提供等の記録の参照（参照権限を持つ事務の記録だけ）",
    )
    def provision_records(
        request: Request,
        atena_no: Annotated[
            str, Query(min_length=1, max_length=32, description="団体内統合宛名番号")
        ],
        principal: StaffPrincipal = viewing,
    ) -> RecordsOut:
        catalogue: Catalogue = request.app.state.catalogue
        try:
            person = service.check_atena_no(atena_no)
        except Problem as exc:
            # Not the value itself: whatever was typed stays out of the audit log.
            audit_refusal(request, principal.staff_id, VIEW_ACTION, exc.code)
            raise
        screen_staff(request, principal.staff_id, VIEW_ACTION, person=person)

        def work(s: Session) -> Done[RecordsOut]:
            views, affairs = service.provision_records_for_staff(
                s, catalogue, principal.roles, person
            )
            out = RecordsOut(
                atena_no=person,
                affairs=affairs,
                records=[RecordOut(**vars(v)) for v in views],
            )
            return Done(
                out,
                subject=person,
                affair=affairs[0] if len(affairs) == 1 else None,
                detail={"affairs": affairs, "count": len(views)},
            )

        return audited(request, principal.staff_id, VIEW_ACTION, work, subject=person)

    return router
