"""What an investigator asks for: one value carried from the form or command line to the records and the audit trail."""

from __future__ import annotations

from dataclasses import dataclass

from facetrail.accountability.policy import SearchRequest
from facetrail.accountability.users import Actor
from facetrail.engine.geometry import Box
from facetrail.textfold import clean


@dataclass(frozen=True)
class CaseRequest:
    """A search (1:N), comparison (1:1) or quality-override request, bound to a case: the case number, purpose and
    offence the policy checks, the authorization reference and note kept with it, and for a search the gallery and
    the face chosen in the probe (drawn by hand as ``face_box``, or by its number among the faces found)."""

    case_number: str
    purpose: str
    offence: str
    authorization_ref: str = ""
    note: str = ""
    gallery: str = ""
    face_box: Box | str | None = None
    """A Box, or the text "x,y,w,h" as typed (checked by ``box()`` when the request is judged, so a bad one is an
    audited refusal)."""
    face_number: int | None = None

    def __post_init__(self) -> None:
        """Keep the case fields as the policy reads them, whichever interface made the request: the case number,
        purpose, offence and authorization reference cleaned (``textfold.clean``: NFKC, no invisible characters, no
        surrounding space), the note without surrounding space (otherwise as typed: its keywords are matched on its
        folded form)."""
        for name in ("case_number", "purpose", "offence", "authorization_ref"):
            object.__setattr__(self, name, clean(getattr(self, name)))
        object.__setattr__(self, "note", self.note.strip())

    def box(self) -> Box | None:
        """The hand-drawn face box, if any (FacetrailError naming the problem with a bad one)."""
        if isinstance(self.face_box, str):
            return Box.parse(self.face_box) if self.face_box.strip() else None
        return self.face_box

    def for_policy(self, kind: str, actor: Actor) -> SearchRequest:
        """The request as the policy judges it: a ``kind`` ("search" or "compare") asked for by ``actor``."""
        return SearchRequest(kind=kind, username=actor.username, unit=actor.unit, case_number=self.case_number,
                             purpose=self.purpose, offence=self.offence, authorization_ref=self.authorization_ref,
                             note=self.note)

    def case_fields(self) -> dict[str, str]:
        """The fields a search's or request's record and its audit entry keep about the case."""
        return {"case_number": self.case_number, "purpose": self.purpose, "offence": self.offence,
                "authorization_ref": self.authorization_ref, "note": self.note}
