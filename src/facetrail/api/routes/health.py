"""Health check for load balancers and monitoring."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import select, text

from facetrail.accountability.schema import AuditCheckpointRecord
from facetrail.api.deps import SystemDep
from facetrail.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", summary="Health check", response_model=Health,
            responses={503: {"model": Health, "description": "The database or the audit signing key is unavailable"}})
def health(system: SystemDep) -> JSONResponse:
    """Whether the database answers and the audit signing key is present (no authentication; nothing sensitive).
    The key is created when the first checkpoint is signed; missing after that, the trail cannot be vouched for."""
    try:
        with system.galleries.sessions() as session:
            session.execute(text("SELECT 1"))
            signed = session.scalar(select(AuditCheckpointRecord.id).limit(1)) is not None
        database = True
    except Exception:  # noqa: BLE001 - any failure to answer means unavailable
        database, signed = False, True
    audit_key = "present" if system.audit.key_path.is_file() else "missing" if signed else "not_created_yet"
    healthy = database and audit_key != "missing"
    report = Health(status="ok" if healthy else "unavailable", database=database, audit_key=audit_key)
    return JSONResponse(report.model_dump(), status_code=200 if healthy else 503)
