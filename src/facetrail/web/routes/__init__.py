"""The pages, one module per kind of user, plus the photographs they show."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from facetrail.http.deps import reject_nul_text
from facetrail.web.routes import admin, auth, cases, examiner, investigator, oversight, photos, supervisor

web_router = APIRouter(include_in_schema=False, dependencies=[Depends(reject_nul_text)])
for module in (auth, investigator, photos, examiner, supervisor, oversight, admin, cases):
    web_router.include_router(module.router)
