"""Galleries: creating them, granting units access, enrolling photographs, expunging subjects."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile, status

from facetrail.accountability.service import Facetrail
from facetrail.accountability.service import Actor
from facetrail.http.deps import CurrentActor, SystemDep
from facetrail.http.errors import COMMON_ERRORS, UPLOAD_ERRORS, ApiError, documented
from facetrail.http.files import read_upload, saved, upload_name
from facetrail.http.schemas import (
    EnrolBatchOut,
    EnrolOutcomeOut,
    GalleryCreate,
    GalleryDetail,
    GalleryOut,
    Grant,
    GrantCreate,
    RemovalReportOut,
)
from facetrail.errors import FacetrailError
from facetrail.gallery.enrol import EnrolItem, EnrolOutcome, EnrolSummary
from facetrail.gallery.gallery import SUBJECT_ID_MAX, check_subject_id

router = APIRouter(prefix="/galleries", tags=["galleries"], responses=COMMON_ERRORS)

MANIFEST_COLUMNS = ("file", "subject_id")
MANIFEST_OPTIONAL = ("source", "capture_date")


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
    system.require(actor, "enrol")  # before the upload touches the disk; the service checks again
    file_name = upload_name(image, "image")
    _, (enrolled,) = enrol_uploads(system, actor, name, [(file_name, read_upload(image), subject_id, source, capture_date, {})])
    outcome = _outcome_out(file_name, enrolled)
    if outcome.status in ("rejected", "previously-rejected"):
        raise ApiError(422, "enrolment_rejected", f"{file_name}: {outcome.reason}")
    if outcome.status == "duplicate":
        response.status_code = status.HTTP_200_OK
    return outcome


@router.post("/{name}/batches", summary="Enrol a batch of photographs", response_model=EnrolBatchOut,
             responses=UPLOAD_ERRORS)
def enrol_batch(
    name: str,
    images: Annotated[list[UploadFile], File(description="The photographs, each under a distinct file name.")],
    manifest: Annotated[str, Form(description="CSV with columns file, subject_id and optionally source, capture_date "
                                              "(YYYY-MM-DD); other columns are kept as image metadata. One row per file.")],
    actor: CurrentActor,
    system: SystemDep,
    source: Annotated[str | None, Form(description="Source for rows without one.")] = None,
) -> EnrolBatchOut:
    """Enrol several photographs (admin; audited). Each gets its own outcome: one bad photograph never stops the
    batch, and photographs already enrolled are skipped."""
    system.require(actor, "enrol")  # before the uploads touch the disk; the service checks again
    files = manifest_files(images, manifest, source)
    summary, outcomes = enrol_uploads(system, actor, name, files)
    return EnrolBatchOut(**summary.to_dict(), outcomes=[_outcome_out(f[0], o) for f, o in zip(files, outcomes)])


def manifest_files(images: list[UploadFile], manifest: str, source: str | None) -> list[tuple]:
    """The uploaded photographs as ``(file name, bytes, subject_id, source, capture_date, extra)`` items, each by its
    row in the manifest CSV; refused unless the manifest names exactly the uploaded files, each once."""
    names = [upload_name(upload, f"image-{number}") for number, upload in enumerate(images, start=1)]
    if len(set(names)) != len(names):
        raise FacetrailError("two uploaded files have the same name; the manifest names each file once")
    rows = _manifest(manifest, source)
    problems = []
    if missing := sorted(set(names) - set(rows)):
        problems.append(f"no manifest row for {', '.join(missing)}")
    if unknown := sorted(set(rows) - set(names)):
        problems.append(f"no file uploaded for {', '.join(unknown)}")
    if problems:
        raise FacetrailError("the manifest and the files differ: " + "; ".join(problems))
    return [(file_name, read_upload(upload), *rows[file_name]) for file_name, upload in zip(names, images)]


def _manifest(text: str, default_source: str | None) -> dict[str, tuple]:
    """file name -> (subject_id, source, capture_date, extra) from the manifest CSV."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [column for column in MANIFEST_COLUMNS if column not in (reader.fieldnames or [])]
    if missing:
        raise FacetrailError(f"manifest: missing column(s) {', '.join(missing)}")
    rows: dict[str, tuple] = {}
    try:
        for line, row in enumerate(reader, start=2):
            file_name, subject = (row.get("file") or "").strip(), (row.get("subject_id") or "").strip()
            row_source = (row.get("source") or default_source or "").strip()
            if not file_name or not subject or not row_source:
                raise FacetrailError(f"manifest line {line}: file, subject_id and source (a column or the source field) are required")
            try:
                check_subject_id(subject)
            except FacetrailError as exc:
                raise FacetrailError(f"manifest line {line}: {exc}") from None
            if file_name in rows:
                raise FacetrailError(f"manifest line {line}: {file_name!r} is named twice")
            try:
                captured = dt.date.fromisoformat(row["capture_date"].strip()) if (row.get("capture_date") or "").strip() else None
            except ValueError:
                raise FacetrailError(f"manifest line {line}: capture_date {row['capture_date']!r} is not YYYY-MM-DD") from None
            extra = {k: v for k, v in row.items() if k not in MANIFEST_COLUMNS + MANIFEST_OPTIONAL and k is not None}
            rows[file_name] = (subject, row_source, captured, extra)
    except csv.Error as exc:
        raise FacetrailError(f"manifest: not valid CSV: {exc}") from None
    if not rows:
        raise FacetrailError("manifest: no rows")
    return rows


def enrol_uploads(system: Facetrail, actor: Actor, gallery: str, files: list[tuple],
                  on_outcome: Callable[[EnrolOutcome], None] = lambda outcome: None) -> tuple[EnrolSummary, list[EnrolOutcome]]:
    """Enrol ``(file name, bytes, subject_id, source, capture_date, extra)`` items through the service, in this
    process with a face engine of its own (or on the Ray cluster of ``enrolment.ray_address``), so searches go on
    meanwhile (the uploads are written to a private temporary folder for the duration); the summary and each file's
    outcome, in order. ``on_outcome`` hears of each outcome as it is known; the file's name is in its item's ``extra["uploaded_as"]``."""
    rules = system.admin.enrolment_rules(actor)
    if not rules.ray_address:  # on Ray the actors do the face work; otherwise it stays in this process
        rules = dataclasses.replace(rules, workers=1)
    with saved([(file_name, data) for file_name, data, *_ in files]) as paths:
        items = [EnrolItem(path, subject, source, captured, {**extra, "uploaded_as": file_name})
                 for path, (file_name, _, subject, source, captured, extra) in zip(paths, files)]
        summary = system.admin.enrol(actor, gallery, items, rules, on_outcome)
    by_path = {outcome.item.path: outcome for outcome in summary.outcomes}
    return summary, [by_path[path] for path in paths]


def _outcome_out(file_name: str, outcome: EnrolOutcome) -> EnrolOutcomeOut:
    return EnrolOutcomeOut(file=file_name, subject_id=outcome.item.subject_id, source=outcome.item.source,
                           status=outcome.status, reason=outcome.reason, image_id=outcome.image_id, quality=outcome.quality)
