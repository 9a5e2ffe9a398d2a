"""The photographs the pages show, as JPEG (chips as PNG): a search's probe with its face box, candidates' gallery photographs,
each of them framed on its face (the examiner compares faces at one scale), and the aligned face chips the model compared.
Every one is a view the service audits; auditors and admins get none."""

from __future__ import annotations

from fastapi import APIRouter, Response

from facetrail.http.deps import Rank, SearchId, SystemDep
from facetrail.http.files import face_frame, picture_bytes
from facetrail.web.session import WebActor

router = APIRouter(prefix="/searches/{search_id}")

SHOWN_SIDE = 1024
"""Longest side of a photograph as shown in a page, in pixels."""


def picture_response(data: bytes, media_type: str = "image/jpeg") -> Response:
    """A picture for a page: private, never cached (every view is audited)."""
    return Response(data, media_type=media_type, headers={"Cache-Control": "private, no-store"})


@router.get("/probe.jpg")
def probe(search_id: SearchId, actor: WebActor, system: SystemDep) -> Response:
    """The probe, with the face that was searched outlined."""
    pixels, box = system.reviews.probe_pixels(actor, search_id)
    return picture_response(picture_bytes(pixels, max_side=SHOWN_SIDE, outline=box))


@router.get("/probe/face.jpg")
def probe_face(search_id: SearchId, actor: WebActor, system: SystemDep) -> Response:
    """The probe framed on the face that was searched."""
    pixels, box = system.reviews.probe_pixels(actor, search_id)
    return picture_response(picture_bytes(face_frame(pixels, box)))


@router.get("/probe/chip.png")
def probe_chip(search_id: SearchId, actor: WebActor, system: SystemDep) -> Response:
    """The probe's aligned face chip."""
    return picture_response(picture_bytes(system.reviews.face_chip(actor, search_id), "PNG"), "image/png")


@router.get("/candidates/{rank}.jpg")
def candidate(search_id: SearchId, rank: Rank, actor: WebActor, system: SystemDep) -> Response:
    """A candidate's gallery photograph."""
    pixels, _ = system.reviews.candidate_pixels(actor, search_id, rank)
    return picture_response(picture_bytes(pixels, max_side=SHOWN_SIDE))


@router.get("/candidates/{rank}/face.jpg")
def candidate_face(search_id: SearchId, rank: Rank, actor: WebActor, system: SystemDep) -> Response:
    """A candidate's gallery photograph framed on the face enrolled from it."""
    pixels, box = system.reviews.candidate_pixels(actor, search_id, rank)
    return picture_response(picture_bytes(face_frame(pixels, box)))


@router.get("/candidates/{rank}/chip.png")
def candidate_chip(search_id: SearchId, rank: Rank, actor: WebActor, system: SystemDep) -> Response:
    """A candidate's aligned face chip."""
    return picture_response(picture_bytes(system.reviews.face_chip(actor, search_id, rank), "PNG"), "image/png")
