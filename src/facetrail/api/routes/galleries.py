"""Galleries: creating them, granting units access, enrolling photographs, listing likely duplicates, expunging
subjects."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile, status

from facetrail.accountability.service import SUBJECT_ID_MAX
from facetrail.http.deps import CurrentActor, SystemDep
from facetrail.http.errors import COMMON_ERRORS, UPLOAD_ERRORS, ApiError, documented
from facetrail.http.enrolment import enrol_uploads, manifest_files
from facetrail.http.files import read_upload, upload_name
from facetrail.http.schemas import (
    CalibrationRun,
    EnrolBatchOut,
    EnrolOutcomeOut,
    GalleryCreate,
    GalleryCalibrationOut,
    GalleryDetail,
    GalleryDuplicatesOut,
    GalleryOut,
    Grant,
    GrantCreate,
    RemovalReportOut,
)
from facetrail.gallery.duplicates import MAX_PAIRS
from facetrail.gallery.enrol import EnrolOutcome, uploaded
from facetrail.gallery.manifest import manifest_summary


router = APIRouter(prefix="/galleries", tags=["galleries"], responses=COMMON_ERRORS)


@router.get("", summary="List galleries", response_model=list[GalleryOut])
def list_galleries(actor: CurrentActor, system: SystemDep) -> list[dict]:
    """Every gallery with its allowed sources and counts (any user, as in the CLI)."""
    return [info.to_dict() for info in system.admin.galleries(actor)]


@router.post("", summary="Create a gallery", response_model=GalleryOut, status_code=status.HTTP_201_CREATED,
             responses=documented(409))
def create_gallery(body: GalleryCreate, actor: CurrentActor, system: SystemDep) -> dict:
    """Create a gallery that accepts photographs only from the given provenance sources (admin; audited)."""
    return system.admin.create_gallery(actor, body.name, body.allowed_sources, body.description).to_dict()


@router.get("/{name}", summary="Show a gallery", response_model=GalleryDetail)
def show_gallery(name: str, actor: CurrentActor, system: SystemDep) -> dict:
    """A gallery's description, sources, counts and which units may search it (any user, as in the CLI)."""
    return system.admin.gallery_details(actor, name)


@router.post("/{name}/calibrations", summary="Calibrate from the gallery's own subjects", response_model=GalleryCalibrationOut,
             status_code=status.HTTP_201_CREATED)
def calibrate(name: str, body: CalibrationRun, actor: CurrentActor, system: SystemDep) -> dict:
    """Estimate false-match rates from pairs of the gallery's different subjects, one photograph each (pairs closer
    than calibration.duplicate_distance left out as likely one person under two ids); the gallery's searches use it
    from then on (admin; audited). About a minute per million subjects at 10^8 pairs."""
    return system.calibrations.calibrate_gallery(actor, name, body.pairs)


@router.post("/{name}/grants", summary="Let a unit search a gallery", response_model=Grant,
             status_code=status.HTTP_201_CREATED, responses=documented(409))
def grant(name: str, body: GrantCreate, actor: CurrentActor, system: SystemDep) -> Grant:
    """Authorize a unit's investigators ('*': every unit) to search the gallery (admin; audited)."""
    system.admin.grant_gallery(actor, name, body.unit)
    return Grant(gallery=name, unit=body.unit.strip())


@router.delete("/{name}/grants/{unit:path}", summary="Withdraw a unit's grant", status_code=status.HTTP_204_NO_CONTENT)
def revoke(name: str, unit: str, actor: CurrentActor, system: SystemDep) -> Response:
    """Withdraw a unit's authorization to search the gallery (admin; audited). The unit is the rest of the path, so
    a unit name holding '/' is written as it is."""
    system.admin.revoke_gallery(actor, name, unit)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{name}/duplicates", summary="List likely duplicates", response_model=GalleryDuplicatesOut)
def duplicates(
    name: str,
    actor: CurrentActor,
    system: SystemDep,
    max_distance: Annotated[float | None, Query(
        gt=0, lt=2, description="List pairs at most this far apart (default: calibration.duplicate_distance).")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAIRS, description="Most pairs listed, closest first.")] = 1000,
) -> dict:
    """Pairs of photographs of different subjects so close that they are likely one person under two ids (aliases,
    re-bookings), for the agency to resolve (admin; audited with the distance and the count). Compares every
    template of the gallery: about a minute at 200,000, ten at a million on two busy cores (docs/scaling.md)."""
    return system.admin.duplicates(actor, name, max_distance, limit).to_dict()


@router.delete("/{name}/subjects/{subject_id}", summary="Expunge a subject", response_model=RemovalReportOut)
def remove_subject(name: str, subject_id: str, actor: CurrentActor, system: SystemDep) -> dict:
    """Remove a subject's images, templates, stored photographs and index entries (admin; audited)."""
    return system.admin.remove_subject(actor, name, subject_id).to_dict()


@router.post(
    "/{name}/images", summary="Enrol one photograph", response_model=EnrolOutcomeOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": EnrolOutcomeOut, "description": "Already enrolled (duplicate); nothing changed"},
               **UPLOAD_ERRORS},
)
def enrol_image(
    name: str,
    image: Annotated[UploadFile, File(description="The photograph.")],
    subject_id: Annotated[str, Form(min_length=1, max_length=SUBJECT_ID_MAX)],
    source: Annotated[str, Form(description="Its provenance source; the gallery must allow it.")],
    actor: CurrentActor,
    system: SystemDep,
    response: Response,
    capture_date: Annotated[dt.date | None, Form()] = None,
) -> EnrolOutcomeOut:
    """Enrol one photograph of a subject (admin; audited). 201 when enrolled, 200 when the same bytes are already
    enrolled; a photograph refused (no single acceptable face, a source not allowed, not an image) is 422."""
    system.require(actor, "enrol")  # before the upload is read; the service checks again
    photo = uploaded(upload_name(image, "image"), read_upload(image), subject_id, source, capture_date)
    _, (enrolled,) = enrol_uploads(system, actor, name, [photo])
    outcome = _outcome_out(enrolled)
    if outcome.status in ("rejected", "previously-rejected"):
        raise ApiError(422, "enrolment_rejected", f"{outcome.file}: {outcome.reason}")
    if outcome.status == "duplicate":
        response.status_code = status.HTTP_200_OK
    return outcome


@router.post("/{name}/batches", summary="Enrol a batch of photographs", response_model=EnrolBatchOut,
             responses=UPLOAD_ERRORS)
def enrol_batch(
    name: str,
    images: Annotated[list[UploadFile], File(description="The photographs, each under a distinct file name.")],
    manifest: Annotated[str, Form(description=f"CSV with the columns {manifest_summary()}; path is the uploaded "
                                              "file's name. One row per file.")],
    actor: CurrentActor,
    system: SystemDep,
    source: Annotated[str | None, Form(description="Source for rows without one.")] = None,
) -> EnrolBatchOut:
    """Enrol several photographs (admin; audited). Each gets its own outcome: one bad photograph never stops the
    batch, and photographs already enrolled are skipped."""
    system.require(actor, "enrol")  # before the uploads are read; the service checks again
    summary, outcomes = enrol_uploads(system, actor, name, manifest_files(images, manifest, source))
    return EnrolBatchOut(**summary.to_dict(), outcomes=[_outcome_out(outcome) for outcome in outcomes])


def _outcome_out(outcome: EnrolOutcome) -> EnrolOutcomeOut:
    return EnrolOutcomeOut(file=outcome.item.path.name, subject_id=outcome.item.subject_id, source=outcome.item.source,
                           status=outcome.status, reason=outcome.reason, image_id=outcome.image_id, quality=outcome.quality)
