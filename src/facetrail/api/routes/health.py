"""Health check for load balancers and monitoring."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from facetrail.http.deps import SystemDep
from facetrail.http.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", summary="Health check", response_model=Health,
            responses={503: {"model": Health, "description": "The database or the audit signing key is unavailable"}})
def health(system: SystemDep) -> JSONResponse:
    """Whether the database answers and the audit signing key is present (no authentication; nothing sensitive).
    The key is created when the first checkpoint is signed; missing after that, the trail cannot be vouched for."""
    database, audit_key = system.health()
    healthy = database and audit_key != "missing"
    report = Health(status="ok" if healthy else "unavailable", database=database, audit_key=audit_key)
    return JSONResponse(report.model_dump(), status_code=200 if healthy else 503)
