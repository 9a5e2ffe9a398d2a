"""The tamper-evident audit trail: verify, browse, export."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.responses import FileResponse

from facetrail.http.deps import MAX_ID, CurrentActor, SystemDep
from facetrail.http.files import export_response
from facetrail.http.errors import COMMON_ERRORS
from facetrail.http.schemas import AuditEntryOut, AuditVerificationOut

router = APIRouter(prefix="/audit", tags=["oversight"], responses=COMMON_ERRORS)


@router.get("/verify", summary="Verify the audit trail", response_model=AuditVerificationOut)
def verify(actor: CurrentActor, system: SystemDep) -> dict:
    """Recompute the hash chain and check the signed checkpoints; ``ok`` is false, with the first bad entry, when
    the trail was tampered with (auditors and supervisors; audited)."""
    return dataclasses.asdict(system.oversight.verify_audit(actor))


@router.get("/entries", summary="Browse audit entries", response_model=list[AuditEntryOut])
def entries(
    actor: CurrentActor,
    system: SystemDep,
    since_seq: Annotated[int, Query(ge=0, le=MAX_ID, description="Entries after this sequence number.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    who: Annotated[str | None, Query(alias="actor", description="Only this user's entries.")] = None,
    action: Annotated[str | None, Query(description="Only entries of this action, e.g. search.")] = None,
) -> list[dict]:
    """Audit entries in order (auditors and supervisors): a supervisor outside the policy's oversight unit reads
    their unit's entries; an account that may still decide on a review reads others' decisions on it withheld and no
    hashes (blind review)."""
    return system.oversight.audit_entries(actor, since_seq, limit, who, action)


@router.post("/exports", summary="Export the audit trail", response_class=FileResponse, status_code=status.HTTP_200_OK,
             responses={200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
                              "description": "A zip of the trail, signed checkpoints, public key and verifier"}})
def export(actor: CurrentActor, system: SystemDep) -> FileResponse:
    """A zip of the trail (JSON Lines), the signed checkpoints, the public key, a README and a standalone verifier
    (auditors and the oversight unit's supervisors, with no review still open to them; audited first, so the export
    includes its own entry)."""
    return export_response(system, actor)
