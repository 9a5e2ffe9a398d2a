"""The photographs the pages show, as JPEG (chips as PNG): a search's probe with its face box, candidates' gallery photographs,
each of them framed on its face (the examiner compares faces at one scale), and the aligned face chips the model compared;
and the page that shows one photograph whole. Auditors and admins get none.

A page and its pictures are one action: a picture that an audited page view of this user names, fetched soon after it,
is served after the same scope check without an audit entry of its own and without counting against the user's
request limit (``Reviews.covering_page_view``); any other fetch of a picture is audited and counted on its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse

from facetrail.accountability.service import Actor, Facetrail, PageFetch
from facetrail.errors import FacetrailError
from facetrail.http.deps import Rank, SearchId, SystemDep, count_request
from facetrail.http.files import face_frame, picture_bytes
from facetrail.web.pages import render
from facetrail.web.session import PictureActor, WebActor

router = APIRouter(prefix="/searches/{search_id}")

SHOWN_SIDE = 1024
"""Longest side of a photograph as shown in a page, in pixels."""
COVERED_PICTURES_PER_PAGE_LOAD = 110
"""Covered pictures allowed per page load the request limit allows: a ceiling for a script, never met by a page (the
longest candidate list a policy may allow, 100, and the probe and candidate framed and as chips)."""


def picture_response(data: bytes, media_type: str = "image/jpeg") -> Response:
    """A picture for a page: private, never cached (every view is audited)."""
    return Response(data, media_type=media_type, headers={"Cache-Control": "private, no-store"})


def page_fetch(request: Request, actor: PictureActor, system: SystemDep) -> Iterator[PageFetch]:
    """What a page's picture fetch does once the service knows whether a page view covers it: an uncovered one
    counts against the user's request limit (429 over it, before the picture is read or its view recorded), a
    covered one only against a ceiling of its own (COVERED_PICTURES_PER_PAGE_LOAD). A fetch refused before that
    (out of the user's scope, say) counts as a request too."""
    told: list[bool] = []

    def fetched(covered: bool) -> None:
        told.append(covered)
        if covered:
            count_request(request, system, actor, "covered pictures", COVERED_PICTURES_PER_PAGE_LOAD)
        else:
            count_request(request, system, actor)

    try:
        yield fetched
    except FacetrailError:
        if not told:
            count_request(request, system, actor)
        raise


PageFetchDep = Annotated[PageFetch, Depends(page_fetch)]


@router.get("/probe.jpg")
def probe(search_id: SearchId, actor: PictureActor, system: SystemDep, fetch: PageFetchDep) -> Response:
    """The probe, with the face that was searched outlined."""
    pixels, box = system.reviews.probe_pixels(actor, search_id, fetch)
    return picture_response(picture_bytes(pixels, max_side=SHOWN_SIDE, outline=box))


@router.get("/probe/face.jpg")
def probe_face(search_id: SearchId, actor: PictureActor, system: SystemDep, fetch: PageFetchDep) -> Response:
    """The probe framed on the face that was searched."""
    pixels, box = system.reviews.probe_pixels(actor, search_id, fetch)
    return picture_response(picture_bytes(face_frame(pixels, box)))


@router.get("/probe/chip.png")
def probe_chip(search_id: SearchId, actor: PictureActor, system: SystemDep, fetch: PageFetchDep) -> Response:
    """The probe's aligned face chip."""
    chip = system.reviews.face_chip(actor, search_id, None, fetch)
    return picture_response(picture_bytes(chip, "PNG"), "image/png")


@router.get("/candidates/{rank}.jpg")
def candidate(search_id: SearchId, rank: Rank, actor: PictureActor, system: SystemDep,
              fetch: PageFetchDep) -> Response:
    """A candidate's gallery photograph."""
    pixels, _ = system.reviews.candidate_pixels(actor, search_id, rank, fetch)
    return picture_response(picture_bytes(pixels, max_side=SHOWN_SIDE))


@router.get("/candidates/{rank}/face.jpg")
def candidate_face(search_id: SearchId, rank: Rank, actor: PictureActor, system: SystemDep,
                   fetch: PageFetchDep) -> Response:
    """A candidate's gallery photograph framed on the face enrolled from it."""
    pixels, box = system.reviews.candidate_pixels(actor, search_id, rank, fetch)
    return picture_response(picture_bytes(face_frame(pixels, box)))


@router.get("/candidates/{rank}/chip.png")
def candidate_chip(search_id: SearchId, rank: Rank, actor: PictureActor, system: SystemDep,
                   fetch: PageFetchDep) -> Response:
    """A candidate's aligned face chip."""
    chip = system.reviews.face_chip(actor, search_id, rank, fetch)
    return picture_response(picture_bytes(chip, "PNG"), "image/png")


@router.get("/photos/probe", response_class=HTMLResponse)
def probe_page(request: Request, search_id: SearchId, actor: WebActor, system: SystemDep) -> HTMLResponse:
    """The probe whole, on a page of its own with the search's case (one audited page view)."""
    return _photograph_page(request, system, actor, search_id, None)


@router.get("/photos/{rank}", response_class=HTMLResponse)
def candidate_page(request: Request, search_id: SearchId, rank: Rank, actor: WebActor, system: SystemDep) -> HTMLResponse:
    """A candidate's gallery photograph whole, on a page of its own with the search's case (one audited page view)."""
    return _photograph_page(request, system, actor, search_id, rank)


def _photograph_page(request: Request, system: Facetrail, actor: Actor, search_id: int, rank: int | None) -> HTMLResponse:
    photograph = system.reviews.show_photograph(actor, search_id, rank)
    reviewing = actor.has("examiner") and not photograph["own_search"]
    back = (f"/reviews/{search_id}" + (f"?rank={rank}" if rank else "")) if reviewing else f"/searches/{search_id}"
    picture = f"/searches/{search_id}/" + (f"candidates/{rank}.jpg" if rank else "probe.jpg")
    return render(request, "photograph.html", {"photograph": photograph, "picture": picture, "back": back})
