"""Looking at a search and reviewing it under the two-person rule.

A search's candidates and photographs are shown to its investigator, to examiners (of every unit) and to the
supervisors of its unit, each view audited. Examiners review blind: each sees only their own decisions, and a
candidate becomes a lead only when two different examiners verify it (``outcomes``). By policy they review blind to
the algorithm too: no rank order, distance, false-match estimate or subject id of a candidate until they decide on
it. A candidate that is a lead, settled or in dispute takes no further examiner's decision (``context.open_to``); a
supervisor who neither ran nor reviewed a search settles examiners' disagreements.

A page and its pictures are one action: a page that shows a search's photographs records one ``search_viewed``
entry naming the page, the probe (its SHA-256) and the candidates it shows (rank and gallery image each). A picture
the page then fetches, within PAGE_VIEW_COVERS of that entry, by the same user, is one the entry names: it is served
after the same scope check but without an entry of its own (``covering_page_view``). Any other view of a photograph
(the API's, a URL typed in, a page view too old) is audited one entry per picture.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from facetrail.accountability import outcomes
from facetrail.accountability.comparison import check_comparison
from facetrail.accountability.context import (
    NOTICE,
    Context,
    candidate_at,
    candidate_figures,
    check_notes,
    completed_search,
    open_to,
    user_names,
)
from facetrail.accountability.schema import DECISIONS, ProbeRecord, ResolutionRecord, ReviewRecord, SearchRecord
from facetrail.accountability.users import Actor
from facetrail.engine.geometry import Box
from facetrail.errors import DuplicateError, FacetrailError, NotFoundError
from facetrail.gallery.schema import ImageRecord, TemplateRecord
from facetrail.store import utcnow

PAGE_VIEW_COVERS = dt.timedelta(minutes=15)
"""How long after a page view of a search the pictures it names are served to its user without entries of their own."""
PAGE_VIEWS_LOOKED_AT = 20
"""How many of a user's most recent page views of one search a picture's fetch looks through for one naming it."""

PageFetch = Callable[[bool], None]
"""Told, before a page's picture is served, whether a page view covers it (the web counts an uncovered fetch against
the user's request limit); it may refuse by raising."""


class Reviews:
    """Showing searches and their photographs, examiners' decisions and supervisors' resolutions."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def review_queue(self, actor: Actor) -> list[dict[str, Any]]:
        """Searches waiting for this examiner: not run by them, not yet decided by them, still open. Blind: no one
        else's decisions are shown."""
        self.context.require(actor, "review")
        with self.context.galleries.sessions() as session:
            searches = session.scalars(
                select(SearchRecord).where(SearchRecord.kind == "search", SearchRecord.status == "completed",
                                           SearchRecord.user_id != actor.id).order_by(SearchRecord.started_at)
            ).all()
            status = outcomes.outcomes_for(session, [s.id for s in searches], self.context.examiners_required())
            mine = set(session.scalars(select(ReviewRecord.search_id).where(ReviewRecord.examiner_id == actor.id)))
            return [
                {"search_id": s.id, "case_number": s.case_number, "gallery": s.gallery_name, "purpose": s.purpose,
                 "offence": s.offence, "started_at": s.started_at.isoformat(), "candidates": len(s.candidates)}
                for s in searches if s.id not in mine and status[s.id] == "pending_review"
            ]

    def show_search(self, actor: Actor, search_id: int, page: str | None = None) -> dict[str, Any]:
        """A search and its candidate list (audited). The investigator who ran it sees the outcome, and each lead
        candidate marked (``lead``) with the decisions that made it one; an examiner sees only their own decisions
        (blind review), even one who is a supervisor too; a supervisor sees every decision. Under the policy's
        ``examiners_blind_to_algorithm`` an examiner is blind to the algorithm too (``_blinded``): the candidates
        come labelled A, B, ... in an order of their own, and a candidate's distance, false-match estimate, subject id
        and image id are withheld (None) until they decide on it. ``page`` names the web page that shows it with its
        photographs: its entry then covers them (``covering_page_view``)."""
        context = self.context
        with context.galleries.sessions() as session:
            search = context.viewable_search(session, actor, search_id)
            sees_all = sees_every_decision(actor)
            owner = search.user_id == actor.id
            reviews = session.scalars(select(ReviewRecord).where(ReviewRecord.search_id == search_id)
                                      .order_by(ReviewRecord.decided_at, ReviewRecord.id)).all()
            resolutions = {r.candidate_id: r for r in session.scalars(
                select(ResolutionRecord).where(ResolutionRecord.candidate_id.in_([c.id for c in search.candidates])))}
            leads = {c.id for c in search.candidates if (owner or sees_all) and outcomes.candidate_status(
                [r for r in reviews if r.candidate_id == c.id], resolutions.get(c.id), context.examiners_required()) == "lead"}
            visible = [r for r in reviews if sees_all or r.examiner_id == actor.id or r.candidate_id in leads]
            names = user_names(session)
            tables = context.recorded_calibration(session, search)
            blind = self._blind_to_algorithm(actor, search)
            shown = {
                "search_id": search.id, "investigator": names.get(search.user_id, ""), "case_number": search.case_number,
                "gallery": search.gallery_name, "gallery_version": search.gallery_version, "policy_version": search.policy_version,
                "purpose": search.purpose, "offence": search.offence, "face_box": search.face_box, "quality": search.quality,
                "started_at": search.started_at.isoformat(), "calibration": tables.source if tables else None,
                "impostor_pairs": tables.base.impostor_count if tables else None,
                "gallery_subjects": search.gallery_subjects,
                "outcome": context.search_outcome(session, search_id) if owner or sees_all else None,
                "candidates": [
                    {"rank": c.rank, "subject_id": c.subject_external_id, "image_id": c.image_id, "distance": c.distance,
                     **candidate_figures(tables, c.distance, c.false_match_rate, search.gallery_subjects),
                     "lead": c.id in leads, "label": None, "withheld": False,
                     "decisions": [{"examiner": names.get(r.examiner_id, ""), "decision": r.decision, "notes": r.notes,
                                    "comparison": r.comparison}
                                   for r in visible if r.candidate_id == c.id]}
                    for c in search.candidates
                ],
                "blind_to_algorithm": blind,
                "notice": NOTICE,
            }
            probe = session.get(ProbeRecord, search.probe_id) if search.probe_id else None
            shown_pictures = [{"rank": c["rank"], "image_id": c["image_id"]} for c in shown["candidates"]]
            if blind:
                shown["candidates"] = _blinded(shown["candidates"], [c.id for c in search.candidates], actor.id, search_id)
        self._record_view(actor, search_id, page, probe.sha256 if probe else None, shown_pictures)
        return shown

    def blind_to_algorithm(self, actor: Actor, search_id: int) -> bool:
        """Whether ``actor`` looks at this search blind to the algorithm: an examiner who did not run it, under the
        policy's ``examiners_blind_to_algorithm`` (refused, audited, where they may not see the search at all)."""
        with self.context.galleries.sessions() as session:
            return self._blind_to_algorithm(actor, self.context.viewable_search(session, actor, search_id))

    def _blind_to_algorithm(self, actor: Actor, search: SearchRecord) -> bool:
        return (actor.has("examiner") and search.user_id != actor.id and not sees_every_decision(actor)
                and self.context.policy()[1].review.examiners_blind_to_algorithm)

    def show_photograph(self, actor: Actor, search_id: int, rank: int | None = None) -> dict[str, Any]:
        """One photograph of a search on a page of its own: the probe (``rank`` None) or the candidate at ``rank``,
        with the search's case; one audited page view (``search_viewed``, page "photograph") that covers it. An
        examiner blind to the algorithm who has not decided on the candidate gets it ``withheld``: no subject or
        image id."""
        context = self.context
        with context.galleries.sessions() as session:
            search = context.viewable_search(session, actor, search_id)
            candidate = candidate_at(search, rank) if rank is not None else None
            probe = session.get(ProbeRecord, search.probe_id) if search.probe_id and candidate is None else None
            shown = {"search_id": search.id, "case_number": search.case_number, "purpose": search.purpose,
                     "offence": search.offence, "gallery": search.gallery_name, "own_search": search.user_id == actor.id,
                     "rank": rank, "subject_id": candidate.subject_external_id if candidate else None,
                     "image_id": candidate.image_id if candidate else None, "notice": NOTICE, "withheld": False}
            withheld = candidate is not None and self._blind_to_algorithm(actor, search) and session.scalar(
                select(ReviewRecord.id).where(ReviewRecord.candidate_id == candidate.id,
                                              ReviewRecord.examiner_id == actor.id)) is None
        self._record_view(actor, search_id, "photograph", probe.sha256 if probe else None,
                          [shown] if candidate is not None else [])
        if withheld:  # blind to the algorithm: neither rank nor subject nor image id until they decide
            shown.update(subject_id=None, image_id=None, withheld=True)
        return shown

    def _record_view(self, actor: Actor, search_id: int, page: str | None, probe_sha256: str | None,
                     candidates: list[dict[str, Any]]) -> None:
        """Audit one view of a search (``search_viewed``): the page it was, if any, the probe and the candidates it
        showed (rank and gallery image each)."""
        details: dict[str, Any] = {"page": page} if page else {}
        if probe_sha256:
            details["probe_sha256"] = probe_sha256
        details["candidates"] = [{"rank": c["rank"], "image_id": c["image_id"]} for c in candidates]
        self.context.audit.append(actor.username, "search_viewed", f"search:{search_id}", details)

    def covering_page_view(self, actor: Actor, search_id: int, picture: dict[str, Any]) -> int | None:
        """The audited page view (its entry's seq) that covers a picture of a search ``actor`` fetches now: one of
        theirs, of a page, recorded within PAGE_VIEW_COVERS, naming ``picture`` (``{"probe_sha256": ...}`` or
        ``{"rank": ..., "image_id": ...}``); None when there is none. Says nothing of whether ``actor`` may see the
        search: the caller has checked that."""
        for entry in self.context.audit.entries(actor=actor.username, action="search_viewed", target=f"search:{search_id}",
                                                recorded_since=utcnow() - PAGE_VIEW_COVERS, newest_first=True,
                                                limit=PAGE_VIEWS_LOOKED_AT):
            if _page_shows(entry["details"], picture):
                return entry["seq"]
        return None

    def decide(self, actor: Actor, search_id: int, rank: int, decision: str, notes: str = "",
               comparison: dict[str, Any] | None = None) -> str:
        """Record an examiner's decision on one candidate still open to them, with their structured comparison
        where they made one (``comparison.check_comparison``); returns the search's outcome afterwards. Refused on a
        search they ran (audited), twice, or once the candidate is no longer open."""
        context = self.context
        context.require(actor, "review", f"search:{search_id}")
        _check_decision(decision)
        comparison = check_comparison(decision, comparison)
        check_notes(notes)
        with context.galleries.sessions() as session:
            if completed_search(session, search_id).user_id == actor.id:
                context.deny(actor, "review", f"search:{search_id}", "the investigator who ran a search cannot review it")
        with context.audit.transaction() as session:
            search = completed_search(session, search_id)
            candidate = candidate_at(search, rank)
            reviews = list(session.scalars(select(ReviewRecord).where(ReviewRecord.candidate_id == candidate.id)))
            if any(review.examiner_id == actor.id for review in reviews):
                raise DuplicateError(f"you already decided on candidate {rank} of search {search_id}; decisions are final")
            resolution = session.scalar(select(ResolutionRecord).where(ResolutionRecord.candidate_id == candidate.id))
            if not open_to(reviews, resolution, actor.id, context.examiners_required()):
                raise DuplicateError(f"candidate {rank} of search {search_id} is no longer open for review: the "
                                     "examiners' decisions on it are complete (a supervisor settles a disagreement)")
            session.add(ReviewRecord(search_id=search_id, candidate_id=candidate.id, examiner_id=actor.id, decision=decision,
                                     notes=notes, comparison=comparison))
            session.flush()
            context.audit.record(session, actor.username, "review_decision", f"search:{search_id}",
                                 {"rank": rank, "subject_id": candidate.subject_external_id, "decision": decision, "notes": notes,
                                  "comparison": comparison})
            return context.search_outcome(session, search_id)

    def disputes(self, actor: Actor) -> list[dict[str, Any]]:
        """Candidates on which examiners disagree and no supervisor has ruled, for a supervisor to resolve: those of
        searches of the supervisor's unit (of every unit for the policy's oversight unit), whatever the rest of the
        search's outcome. None for a supervisor who is an examiner too (where the policy allows it): they would see
        other examiners' decisions before their own."""
        context = self.context
        context.require(actor, "resolve_dispute")
        if actor.has("examiner"):
            return []
        with context.galleries.sessions() as session:
            query = select(SearchRecord).options(selectinload(SearchRecord.candidates)).where(
                SearchRecord.kind == "search", SearchRecord.status == "completed")
            if not context.oversees_every_unit(actor):
                query = query.where(SearchRecord.unit == actor.unit)
            searches = session.scalars(query.order_by(SearchRecord.started_at, SearchRecord.id)).all()
            names = user_names(session)
            required = context.examiners_required()
            found = []
            for search in searches:
                for candidate in search.candidates:
                    reviews = session.scalars(select(ReviewRecord).where(ReviewRecord.candidate_id == candidate.id)).all()
                    resolution = session.scalar(select(ResolutionRecord).where(ResolutionRecord.candidate_id == candidate.id))
                    if outcomes.candidate_status(list(reviews), resolution, required) == "disputed":
                        found.append({"search_id": search.id, "rank": candidate.rank, "subject_id": candidate.subject_external_id,
                                      "case_number": search.case_number, "investigator": names.get(search.user_id, ""),
                                      "decisions": [{"examiner_id": r.examiner_id, "examiner": names.get(r.examiner_id, ""),
                                                     "decision": r.decision, "notes": r.notes} for r in reviews]})
            return found

    def resolve(self, actor: Actor, search_id: int, rank: int, decision: str, notes: str = "") -> str:
        """A supervisor of the search's unit (or of the oversight unit) who neither ran nor reviewed it, and is not
        an examiner, settles a disagreement on one candidate, once; returns the search's outcome afterwards."""
        context = self.context
        context.require(actor, "resolve_dispute", f"search:{search_id}")
        _check_decision(decision)
        check_notes(notes)
        if actor.has("examiner"):
            context.deny(actor, "resolve_dispute", f"search:{search_id}",
                         "an examiner may not settle examiners' disputes (blind review)")
        with context.galleries.sessions() as session:
            search = session.get(SearchRecord, search_id)
            if search is not None and not context.oversees(actor, search):  # before it is known to be completed
                raise context.scope_refusal(actor, "resolve_dispute", search)
            search = completed_search(session, search_id)
            reviewed = session.scalar(select(ReviewRecord.id).where(ReviewRecord.search_id == search_id,
                                                                    ReviewRecord.examiner_id == actor.id))
            if search.user_id == actor.id or reviewed is not None:
                context.deny(actor, "resolve_dispute", f"search:{search_id}",
                             "a supervisor cannot resolve a dispute on a search they ran or reviewed")
        with context.audit.transaction() as session:
            search = completed_search(session, search_id)
            candidate = candidate_at(search, rank)
            reviews = session.scalars(select(ReviewRecord).where(ReviewRecord.candidate_id == candidate.id)).all()
            if session.scalar(select(ResolutionRecord.id).where(ResolutionRecord.candidate_id == candidate.id)):
                raise DuplicateError(f"the dispute on candidate {rank} of search {search_id} is already resolved; "
                                     "resolutions are final")
            if outcomes.candidate_status(list(reviews), None, context.examiners_required()) != "disputed":
                raise FacetrailError(f"candidate {rank} of search {search_id} is not in dispute")
            session.add(ResolutionRecord(candidate_id=candidate.id, supervisor_id=actor.id, decision=decision, notes=notes))
            session.flush()
            context.audit.record(session, actor.username, "dispute_resolved", f"search:{search_id}",
                                 {"rank": rank, "decision": decision, "notes": notes, "unit": search.unit})
            return context.search_outcome(session, search_id)

    def outcome(self, search_id: int) -> str:
        """A search's outcome under the two-person rule."""
        with self.context.galleries.sessions() as session:
            return self.context.search_outcome(session, search_id)

    def lead_report(self, actor: Actor, search_id: int) -> str:
        """The lead report of a search with a verified lead, as a self-contained HTML page (audited), for
        ``leads.LEAD_READERS``."""
        from facetrail.accountability.leads import export_lead

        return export_lead(self.context, actor, search_id)

    # --- the photographs of a search (every view audited) -------------------------------------------------------

    def probe_photo(self, actor: Actor, search_id: int, for_page: PageFetch | None = None) -> tuple[bytes, list[int]]:
        """The probe's bytes and the face box searched with; audited (``probe_viewed``) unless ``for_page`` is given
        (a page's picture) and a page view covers it (``_covered``)."""
        context = self.context
        with context.galleries.sessions() as session:
            search = context.viewable_search(session, actor, search_id)
            probe = session.get(ProbeRecord, search.probe_id)
            if probe is None or not probe.stored:
                raise NotFoundError(f"the probe image of search {search_id} was purged under the retention policy")
            sha, box = probe.sha256, search.face_box
        picture = {"probe_sha256": sha}
        covered = self._covered(actor, search_id, picture, for_page)
        data = context.probes.get(sha)
        if not covered:
            context.audit.append(actor.username, "probe_viewed", f"search:{search_id}", picture)
        return data, box

    def candidate_photo(self, actor: Actor, search_id: int, rank: int,
                        for_page: PageFetch | None = None) -> tuple[bytes, list[int]]:
        """A candidate's gallery photograph and the face box enrolled from it (never for auditors or admins);
        audited (``candidate_image_viewed``) unless ``for_page`` is given and a page view covers it (``_covered``)."""
        context = self.context
        with context.galleries.sessions() as session:
            search = context.viewable_search(session, actor, search_id)
            candidate = candidate_at(search, rank)
            gallery = context.galleries.get(search.gallery_name)
            image = session.get(ImageRecord, candidate.image_id) if candidate.image_id else None
            if image is None:
                raise NotFoundError(f"candidate {rank} of search {search_id} has since been expunged from the gallery")
            template = session.scalar(select(TemplateRecord).where(TemplateRecord.image_id == image.id))
            content_hash, box = image.content_hash, template.face_box
        picture = {"rank": rank, "image_id": candidate.image_id}
        covered = self._covered(actor, search_id, picture, for_page)
        data = gallery.blobs.get(content_hash)
        if not covered:
            context.audit.append(actor.username, "candidate_image_viewed", f"search:{search_id}", picture)
        return data, box

    def _covered(self, actor: Actor, search_id: int, picture: dict[str, Any], for_page: PageFetch | None) -> bool:
        """Whether a view of ``picture``, which ``actor`` may see, goes without an entry of its own: only when
        ``for_page`` is given (a page fetches it) and a page view covers it (``covering_page_view``). ``for_page`` is
        told which before anything is read, and may refuse."""
        if for_page is None:
            return False
        covered = self.covering_page_view(actor, search_id, picture) is not None
        for_page(covered)
        return covered

    def probe_pixels(self, actor: Actor, search_id: int,
                     for_page: PageFetch | None = None) -> tuple[np.ndarray, list[int]]:
        """The probe decoded to RGB pixels, and the face box searched with (audited as ``probe_photo``)."""
        data, box = self.probe_photo(actor, search_id, for_page)
        return self.context.pixels(data), box

    def candidate_pixels(self, actor: Actor, search_id: int, rank: int,
                         for_page: PageFetch | None = None) -> tuple[np.ndarray, list[int]]:
        """A candidate's gallery photograph decoded to RGB pixels, and its enrolled face box (audited as
        ``candidate_photo``)."""
        data, box = self.candidate_photo(actor, search_id, rank, for_page)
        return self.context.pixels(data), box

    def face_chip(self, actor: Actor, search_id: int, rank: int | None = None,
                  for_page: PageFetch | None = None) -> np.ndarray:
        """The aligned face chip the model compared, from the probe (``rank`` None) or from a candidate's gallery
        photograph; audited as a view of that photograph."""
        pixels, box = (self.probe_pixels(actor, search_id, for_page) if rank is None
                       else self.candidate_pixels(actor, search_id, rank, for_page))
        with self.context.engines.searching() as engine:
            return engine.aligned_chip(pixels, Box(*box))


def _blinded(candidates: list[dict[str, Any]], candidate_ids: list[int], examiner_id: int,
             search_id: int) -> list[dict[str, Any]]:
    """``candidates`` as an examiner blind to the algorithm sees them: each subject's photographs together, the
    subjects and their photographs in an order of the examiner's own (stable for them, not the rank order), labelled
    A, B, ... by subject (B1, B2, ... for several photographs of one subject), the algorithm's figures withheld from
    those they have not decided on."""
    def shuffled(key: int) -> str:
        return hashlib.sha256(f"{examiner_id}/{search_id}/{key}".encode()).hexdigest()

    by_subject: dict[str, list[tuple[dict[str, Any], int]]] = {}
    for candidate, candidate_id in zip(candidates, candidate_ids):
        by_subject.setdefault(candidate["subject_id"], []).append((candidate, candidate_id))
    groups = sorted(by_subject.values(), key=lambda group: shuffled(min(candidate_id for _, candidate_id in group)))
    shown = []
    for position, group in enumerate(groups):
        group.sort(key=lambda pair: shuffled(pair[1]))
        for number, (candidate, _) in enumerate(group, start=1):
            candidate["label"] = _label(position) + (str(number) if len(group) > 1 else "")
            if not candidate["decisions"]:
                candidate.update(subject_id=None, image_id=None, distance=None, false_match_rate=None,
                                 false_match_rate_text=None, estimate=None, look_alikes=None, withheld=True)
            shown.append(candidate)
    return shown


def _label(position: int) -> str:
    """A, B, ..., Z, AA, AB, ...: a neutral name for the candidate at ``position`` (from 0)."""
    letters = ""
    position += 1
    while position:
        position, remainder = divmod(position - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def sees_every_decision(actor: Actor) -> bool:
    """Whether ``actor`` sees every examiner's decisions: a supervisor who is not an examiner too (blind review)."""
    return actor.has("supervisor") and not actor.has("examiner")


def _check_decision(decision: str) -> None:
    if decision not in DECISIONS:
        raise FacetrailError(f"decision must be one of {', '.join(DECISIONS)}")


def _page_shows(details: dict[str, Any], picture: dict[str, Any]) -> bool:
    """Whether a ``search_viewed`` entry's ``details`` are a page's that showed ``picture`` (entries written before
    page views named their pictures count candidates and name none)."""
    if not details.get("page"):
        return False
    if "probe_sha256" in picture:
        return details.get("probe_sha256") == picture["probe_sha256"]
    candidates = details.get("candidates")
    return isinstance(candidates, list) and picture in candidates
