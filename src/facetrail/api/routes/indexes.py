"""A gallery's vector index: retraining it for the gallery's size."""

from __future__ import annotations

from fastapi import APIRouter

from facetrail.http.deps import CurrentActor, SystemDep
from facetrail.http.errors import COMMON_ERRORS
from facetrail.http.schemas import IndexRetrainingOut, IndexRetrainingRun

router = APIRouter(prefix="/galleries", tags=["galleries"], responses=COMMON_ERRORS)


@router.post("/{name}/index/retraining", summary="Retrain a gallery's index for its size", response_model=IndexRetrainingOut)
def retrain(name: str, body: IndexRetrainingRun, actor: CurrentActor, system: SystemDep) -> dict:
    """Train the index's quantizers again for the gallery's size and recode its templates, at the same gallery version
    (admin; audited as it starts and ends). Searches go on meanwhile; it takes minutes at millions of templates.
    Refused (400) while the index is searched exactly (below index.compress_at) or its inverted lists still suit the
    gallery's size, unless ``force``."""
    return system.indexes.retrain(actor, name, body.force)
