"""The case view: everything under one case number."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from facetrail.http.deps import CurrentActor, SystemDep
from facetrail.http.errors import COMMON_ERRORS
from facetrail.http.schemas import CaseView

router = APIRouter(prefix="/cases", tags=["oversight"], responses=COMMON_ERRORS)


@router.get("/{case_number}", summary="Everything under one case number", response_model=CaseView)
def case_view(case_number: Annotated[str, Path(max_length=100)], actor: CurrentActor, system: SystemDep) -> dict:
    """The case's searches and comparisons with their outcome, refusals, override requests, examiners' decisions and
    supervisors' rulings, leads, and the audit entries about them (who viewed what, when). For auditors and the
    policy's oversight unit, every unit's part; for another supervisor, their unit's (404 when the case has none);
    403 to anyone else. Audited, refusals too."""
    return system.cases.case_view(actor, case_number)
