"""Searches and comparisons: the only way to search a gallery or compare two faces.

Every request is checked against the actor's role, their unit's grant for the gallery and the policy in force
(purpose, offence, case number, limits), and leaves a record and an audit entry written in one transaction: a
completed search with its ranked candidates, or a refusal with its reason. The system never declares a match: the
candidates are investigative leads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facetrail.accountability.context import NOTICE, Context, Probe, candidate_figures, failure_reason, listed_searches
from facetrail.accountability.policy import Policy, RequestHistory, refusal_reasons
from facetrail.accountability.requests import CaseRequest
from facetrail.accountability.schema import CandidateRecord, SearchRecord, UserRecord
from facetrail.accountability.users import Actor
from facetrail.config import DecodeLimits
from facetrail.engine.decode import DecodedImage, decode_image
from facetrail.engine.geometry import Box
from facetrail.engine.pipeline import FaceEngine, FoundFace, probe_face
from facetrail.errors import FacetrailError, NotFoundError, PermissionDeniedError, PoorQualityError, RefusedError
from facetrail.gallery.calibration import CalibrationInForce
from facetrail.gallery.gallery import Gallery, GalleryInfo
from facetrail.store import utcnow

REFUSED_LABELS = {"search": "search", "compare": "comparison"}
"""How a refusal of each kind of request names it."""


@dataclass(frozen=True)
class CandidateView:
    """One candidate as shown to investigators and examiners."""

    rank: int
    subject_id: str
    image_id: int | None
    distance: float
    false_match_rate: float | None
    false_match_rate_text: str
    """The estimate in words, with what it rests on (``calibration.Estimate.text``)."""
    estimate: dict[str, Any] | None = None
    """The estimate's figures: its interval and basis (``calibration.Estimate.to_dict``); None when uncalibrated."""
    look_alikes: dict[str, Any] | None = None
    """How many people of the gallery would come this close by chance (``calibration.LookAlikes.to_dict``)."""


@dataclass
class SearchResult:
    """A completed search: what ran, under which versions, and the ranked candidate list."""

    search_id: int
    gallery: str
    gallery_version: int
    policy_version: int
    case_number: str
    purpose: str
    offence: str
    probe_sha256: str
    face_box: list[int]
    quality: dict[str, Any]
    candidates: list[CandidateView]
    gallery_subjects: int | None = None
    """The gallery's subjects when it ran: the people who could come close by chance."""
    calibration: str | None = None
    """What the estimates rest on (the calibrations in force when it ran); None when uncalibrated."""
    notice: str = NOTICE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ComparisonResult:
    """A completed 1:1 comparison."""

    search_id: int
    policy_version: int
    case_number: str
    distance: float
    false_match_rate: float | None
    false_match_rate_text: str
    probe_sha256: str
    second_sha256: str
    estimate: dict[str, Any] | None = None
    notice: str = NOTICE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Searches:
    """Searching galleries, comparing faces and inspecting a photograph's faces before either (investigators)."""

    def __init__(self, context: Context) -> None:
        self.context = context

    @property
    def limits(self) -> DecodeLimits:
        """The decoding limits a probe photograph must meet (size, pixels)."""
        return self.context.settings.limits

    @property
    def inspection_limits(self) -> DecodeLimits:
        """The decoding limits of a photograph whose faces are inspected (up to ``limits.max_interactive_pixels``)."""
        return self.context.settings.interactive_engine.limits

    def inspect_faces(self, actor: Actor, data: bytes, face_box: Box | str | None = None) -> tuple[DecodedImage, list[FoundFace]]:
        """The photograph decoded and the faces in it (or the one in ``face_box``), largest first, with their
        quality, for choosing one before a search (investigators; audited, refusals and failures too; nothing is
        stored). Runs on an engine of its own, one photograph at a time, for photographs up to
        ``limits.max_interactive_pixels``, so it never holds up a search; BusyError when no turn comes in time."""
        audit = self.context.audit
        details: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        try:
            self.context.require(actor, "search")
            box = Box.parse(face_box) if isinstance(face_box, str) else face_box
            with self.context.engines.inspecting() as engine:
                decoded = engine.decode(data)
                faces = engine.find_faces(decoded.pixels, box)
        except PermissionDeniedError:
            raise  # audited as access_denied
        except Exception as exc:
            audit.append(actor.username, "faces_inspection_refused", "", {**details, "reason": failure_reason(exc)})
            raise
        audit.append(actor.username, "faces_inspected", "", {
            **details, "width": int(decoded.pixels.shape[1]), "height": int(decoded.pixels.shape[0]), "faces": len(faces)})
        return decoded, faces

    def search(self, actor: Actor, probe_bytes: bytes, request: CaseRequest,
               quality_override: Actor | None = None) -> SearchResult:
        """Search ``request.gallery`` with a probe photograph for an authorized, policy-compliant request (see the
        module docstring). Any failure after the request arrives is audited: a refusal as such, an unexpected error
        as a refused search naming it. ``quality_override`` is the supervisor who approved a poor-quality probe."""
        started = utcnow()
        probe_sha = hashlib.sha256(probe_bytes).hexdigest()
        policy_version, policy = self.context.policy()
        with self._refused_as("search", actor, request, policy_version, probe_sha, started):
            self.context.check(actor, "search")
            target = self.searchable(actor, request.gallery)
            self.check_request(policy, "search", actor, request)
            with self.context.engines.searching() as engine:
                probe = self._acceptable_probe(engine, probe_bytes, request.box(), request.face_number, policy,
                                               quality_override)
                template = engine.template(probe.face)
            hits = target.search(template.embedding, policy.max_candidates)
        found = hits.candidates
        if policy.max_distance is not None:
            found = [c for c in found if c.distance <= policy.max_distance]
        subjects = target.subject_count()
        with self.context.galleries.sessions() as session:
            calibration = self.context.calibration_in_force(session, template.model_name, target.id)
        tables = calibration.tables if calibration else None
        candidates = [CandidateView(c.rank, c.subject_id, c.image_id, c.distance,
                                    **candidate_figures(tables, c.distance, None, subjects)) for c in found]
        gallery_version = hits.version
        with self._refused_as("search", actor, request, policy_version, probe_sha, started), \
                self.context.audit.transaction() as session:
            self.check_request(policy, "search", actor, request, session)
            probe_record = self.context.store_probe(session, probe)
            record = SearchRecord(
                kind="search", user_id=actor.id, unit=actor.unit, status="completed", gallery_id=target.id,
                gallery_name=request.gallery, gallery_version=gallery_version, policy_version=policy_version,
                **request.case_fields(), probe_id=probe_record.id,
                face_box=probe.face.detection.box.as_list(), quality=probe.face.quality.to_dict(),
                quality_override_by=quality_override.id if quality_override and not probe.face.quality.acceptable else None,
                model_name=template.model_name, **_calibration_fields(calibration), gallery_subjects=subjects, started_at=started, ended_at=utcnow(),
            )
            session.add(record)
            session.flush()
            for c in candidates:
                session.add(CandidateRecord(search_id=record.id, rank=c.rank, subject_external_id=c.subject_id, image_id=c.image_id,
                                            distance=c.distance, false_match_rate=c.false_match_rate))
            self.context.audit.record(session, actor.username, "search", f"search:{record.id}", {
                "gallery": request.gallery, "gallery_version": gallery_version, "policy_version": policy_version,
                "case_number": request.case_number, "purpose": request.purpose, "offence": request.offence,
                "authorization_ref": request.authorization_ref,
                "probe_sha256": probe.sha256, "face_box": record.face_box, "quality": record.quality["verdict"],
                "quality_override_by": quality_override.username if record.quality_override_by else None,
                "started_at": started.isoformat(), "ended_at": record.ended_at.isoformat(),
                "gallery_subjects": subjects, "calibration_id": record.calibration_id,
                "group_calibration_ids": record.group_calibration_ids,
                "candidates": [[c.rank, c.subject_id, c.image_id, round(c.distance, 6)] for c in candidates],
            })
            search_id = record.id
        return SearchResult(search_id, request.gallery, gallery_version, policy_version, request.case_number,
                            request.purpose, request.offence, probe.sha256, probe.face.detection.box.as_list(),
                            probe.face.quality.to_dict(), candidates, subjects, tables.source if tables else None)

    def compare(self, actor: Actor, first: bytes, second: bytes, request: CaseRequest) -> ComparisonResult:
        """Compare two photographs (1:1) under the same rules as a search: role, policy, audit."""
        started = utcnow()
        first_sha = hashlib.sha256(first).hexdigest()
        policy_version, policy = self.context.policy()
        with self._refused_as("compare", actor, request, policy_version, first_sha, started):
            self.context.check(actor, "compare")
            self.check_request(policy, "compare", actor, request)
            with self.context.engines.searching() as engine:
                probes = [self._acceptable_probe(engine, data, None, None, policy, None) for data in (first, second)]
                a, b = (engine.template(p.face).embedding for p in probes)
                model_name = engine.model.name
        distance = float(np.linalg.norm(a - b))
        with self.context.galleries.sessions() as session:
            calibration = self.context.calibration_in_force(session, model_name, None)
        figures = candidate_figures(calibration.tables if calibration else None, distance, None, None)
        with self._refused_as("compare", actor, request, policy_version, first_sha, started), \
                self.context.audit.transaction() as session:
            self.check_request(policy, "compare", actor, request, session)
            first_record, second_record = (self.context.store_probe(session, p) for p in probes)
            record = SearchRecord(kind="compare", user_id=actor.id, unit=actor.unit, status="completed", policy_version=policy_version,
                                  **request.case_fields(), probe_id=first_record.id, second_probe_id=second_record.id,
                                  model_name=model_name, **_calibration_fields(calibration), started_at=started, ended_at=utcnow())
            session.add(record)
            session.flush()
            self.context.audit.record(session, actor.username, "compare", f"search:{record.id}", {
                "policy_version": policy_version, "case_number": request.case_number, "purpose": request.purpose,
                "offence": request.offence, "probe_sha256": probes[0].sha256, "second_sha256": probes[1].sha256,
                "distance": round(distance, 6),
            })
            search_id = record.id
        return ComparisonResult(search_id, policy_version, request.case_number, distance, figures["false_match_rate"],
                                figures["false_match_rate_text"], probes[0].sha256, probes[1].sha256, figures["estimate"])

    def my_searches(self, actor: Actor, limit: int = 50) -> list[dict[str, Any]]:
        """The actor's own searches and comparisons, newest first, completed or refused, each with its outcome (a
        completed comparison has none)."""
        with self.context.galleries.sessions() as session:
            return listed_searches(session, SearchRecord.user_id == actor.id, limit, self.context.examiners_required())

    def searchable_galleries(self, actor: Actor) -> list[GalleryInfo]:
        """The galleries the actor's unit may search (none for someone who is not an investigator)."""
        galleries = self.context.galleries
        return [info for info in galleries.list() if self.context.users.may_search(actor, info.id)]

    # --- the checks every request passes (overrides make them too) ------------------------------------------------

    def check_request(self, policy: Policy, kind: str, actor: Actor, request: CaseRequest,
                      session: Session | None = None) -> None:
        """Refuse (RefusedError, every reason) a request the policy does not permit, counting the completed searches
        ``session`` sees: the actor's today, and everyone's on the case. Without ``session``, in a session of its own:
        the early check, before the face work, so a refused request costs little. The authoritative check runs again
        in the transaction that records the request (``session``): it holds the audit lock (a file lock on SQLite, an
        advisory lock on PostgreSQL, across processes), so requests arriving at once are counted one after another
        and no more than the limits complete."""
        with nullcontext(session) if session is not None else self.context.galleries.sessions() as session:
            day_start = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
            today = session.scalar(select(func.count()).select_from(SearchRecord).where(
                SearchRecord.user_id == actor.id, SearchRecord.status == "completed", SearchRecord.started_at >= day_start))
            on_case = session.execute(
                select(UserRecord.username).join(SearchRecord, SearchRecord.user_id == UserRecord.id)
                .where(SearchRecord.case_number == request.case_number, SearchRecord.status == "completed")
            ).scalars().all()
        history = RequestHistory(searches_by_user_today=today, users_on_case=frozenset(on_case), searches_on_case=len(on_case))
        reasons = refusal_reasons(policy, request.for_policy(kind, actor), history)
        if reasons:
            raise RefusedError("; ".join(reasons))

    def searchable(self, actor: Actor, gallery: str) -> Gallery:
        """The gallery, if the actor's unit holds a grant to search it."""
        target = self.context.galleries.get(gallery)
        if not self.context.users.may_search(actor, target.id):
            raise PermissionDeniedError(f"unit {actor.unit or '(none)'!r} is not authorized to search gallery {gallery!r}")
        return target

    def chosen_face(self, engine: FaceEngine, data: bytes, face_box: Box | None, face_number: int | None) -> Probe:
        """The probe decoded (up to ``limits.max_interactive_pixels``), with the face chosen by hand (``face_box``),
        by number, or as the only one found."""
        image = decode_image(data, self.context.settings.interactive_engine.limits)
        faces = engine.find_faces(image.pixels, face_box)
        face = probe_face(faces, face_number)
        return Probe(data, hashlib.sha256(data).hexdigest(), image.pixels.shape[1], image.pixels.shape[0], face, len(faces))

    def _acceptable_probe(self, engine: FaceEngine, data: bytes, face_box: Box | None, face_number: int | None,
                          policy: Policy, override: Actor | None) -> Probe:
        """The probe's chosen face, refused (PoorQualityError) when its quality is poor unless the policy allows a
        supervisor's override and ``override`` is a supervisor."""
        probe = self.chosen_face(engine, data, face_box, face_number)
        if not probe.face.quality.acceptable:
            reasons = "; ".join(probe.face.quality.reasons)
            if policy.poor_probe == "refuse":
                raise PoorQualityError(f"probe quality is poor ({reasons}); the policy refuses poor probes")
            if override is None:
                raise PoorQualityError(f"probe quality is poor ({reasons}); a supervisor must approve the search (override)")
            self.context.check(override, "override_quality")
        return probe

    @contextmanager
    def _refused_as(self, kind: str, actor: Actor, request: CaseRequest, policy_version: int, probe_sha: str,
                    started: dt.datetime) -> Iterator[None]:
        """Record and audit any failure in the block as a refused ``kind`` ("search" or "compare"): a refusal
        (FacetrailError, ValueError) is raised again as RefusedError naming it, anything else as it was."""
        try:
            yield
        except (FacetrailError, ValueError) as exc:
            self._refuse(kind, actor, request, policy_version, probe_sha, started, str(exc))
            raise RefusedError(f"{REFUSED_LABELS[kind]} refused: {exc}") from exc
        except Exception as exc:
            self._refuse(kind, actor, request, policy_version, probe_sha, started, failure_reason(exc))
            raise

    def _refuse(self, kind: str, actor: Actor, request: CaseRequest, policy_version: int, probe_sha: str,
                started: dt.datetime, reason: str) -> None:
        """Record a refused search or comparison, with its audit entry, in one transaction."""
        with self.context.audit.transaction() as session:
            target = None
            if request.gallery:
                try:
                    target = self.context.galleries.get(request.gallery)
                except NotFoundError:
                    target = None
            record = SearchRecord(
                kind=kind, user_id=actor.id, unit=actor.unit, status="refused", refusal_reason=reason,
                gallery_id=target.id if target else None, gallery_name=request.gallery, policy_version=policy_version,
                **request.case_fields(), started_at=started, ended_at=utcnow(),
            )
            session.add(record)
            session.flush()
            self.context.audit.record(session, actor.username, f"{kind}_refused", f"search:{record.id}", {
                "reason": reason, "gallery": request.gallery, "policy_version": policy_version,
                "case_number": request.case_number, "purpose": request.purpose, "offence": request.offence,
                "probe_sha256": probe_sha,
            })


def _calibration_fields(calibration: CalibrationInForce | None) -> dict[str, Any]:
    """A search record's fields naming the calibrations in force when it ran."""
    if calibration is None:
        return {"calibration_id": None, "group_calibration_ids": None}
    return {"calibration_id": calibration.base_id, "group_calibration_ids": list(calibration.group_ids) or None}
