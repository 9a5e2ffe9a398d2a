"""The routes, one module per resource, all under ``/api/v1``."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from facetrail.http import API_PREFIX
from facetrail.http.deps import reject_nul_text

from facetrail.api.routes import (
    audit,
    auth,
    cases,
    comparisons,
    faces,
    galleries,
    health,
    indexes,
    leads,
    overrides,
    policy,
    reports,
    reviews,
    searches,
    users,
)

api_router = APIRouter(prefix=API_PREFIX, dependencies=[Depends(reject_nul_text)])
for module in (auth, users, policy, galleries, faces, searches, comparisons, overrides, reviews, leads, reports, audit,
               health, cases, indexes):
    api_router.include_router(module.router)
