"""Request and response bodies, as pydantic models (they make the OpenAPI document).

Why one module: the models build on one another (a search's candidates and their decisions, a decision's structured
comparison, the case view's searches) and together make one OpenAPI document, read section by section here; split,
each part would import most of the others.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from facetrail.accountability.comparison import CONCLUSIONS, FEATURES, FINDINGS
from facetrail.accountability.schema import DECISIONS, OVERRIDE_STATUSES, ROLES
from facetrail.accountability.service import Actor
from facetrail.engine.decode import DecodedImage
from facetrail.engine.pipeline import FoundFace

Role = Literal[ROLES]  # type: ignore[valid-type]
Decision = Literal[DECISIONS]  # type: ignore[valid-type]
Feature = Literal[tuple(FEATURES)]  # type: ignore[valid-type]
Finding = Literal[tuple(FINDINGS)]  # type: ignore[valid-type]
Conclusion = Literal[tuple(CONCLUSIONS)]  # type: ignore[valid-type]


# --- errors ---------------------------------------------------------------------------------------


class Problem(BaseModel):
    """One problem of a request or policy file: where (a line or a field) and what."""

    line: int | None = None
    field: str | None = None
    message: str


class ErrorDetail(BaseModel):
    type: str = Field(description="Machine-readable kind, e.g. 'permission_denied', 'refused', 'corrupt_image'.")
    message: str
    reason: str | None = Field(None, description="For a refused search or comparison: why (the refusal is audited).")
    problems: list[Problem] | None = Field(None, description="For an invalid policy or request: every problem found.")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


# --- authentication and users ---------------------------------------------------------------------


class LoginRequest(BaseModel):
    username: str = Field(max_length=100)
    password: str = Field(max_length=1024)


class Account(BaseModel):
    """A user as the API shows one after it is created or changed."""

    id: int
    username: str
    unit: str
    roles: list[str]

    @classmethod
    def of(cls, actor: Actor) -> Account:
        return cls(id=actor.id, username=actor.username, unit=actor.unit, roles=sorted(actor.roles))


class LoginResponse(BaseModel):
    token: str = Field(description="Send as 'Authorization: Bearer <token>'; the same token is set as the session cookie.")
    token_type: Literal["bearer"] = "bearer"
    csrf_token: str = Field(description="For cookie sessions: echo in the X-CSRF-Token header of every unsafe request.")
    user: Account


class UserSummary(BaseModel):
    id: int
    username: str
    display_name: str
    unit: str
    roles: list[str]
    active: bool
    failed_logins: int
    locked: bool
    locked_until: str | None
    created_at: str | None
    created_by: str | None = Field(None, description="The admin who created the account (none: set-up).")
    pending_roles: list[str] | None = Field(None, description="Roles asked for that wait for a second person.")


class UserCreate(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    roles: list[Role] = Field(min_length=1, max_length=5)
    unit: str = Field("", max_length=100)
    display_name: str = Field("", max_length=200)


class RolesUpdate(BaseModel):
    roles: list[Role] = Field(min_length=1)


class RolesChanged(Account):
    """The user after an account is created or its roles change, with whether roles asked for wait for a second
    person (the roles shown are then those held until it confirms)."""

    pending_second_admin: bool = False
    requested_roles: list[str] = Field(default_factory=list, description="The roles asked for.")


class RoleRequest(BaseModel):
    """A request for roles that waits for a second person."""

    username: str
    unit: str
    roles: list[str]
    from_: list[str] = Field(alias="from", description="The roles the user holds now.")
    requested_by: str | None
    requested_at: str


# --- policy ---------------------------------------------------------------------------------------


class PolicyInForce(BaseModel):
    version: int
    text: str = Field(description="The policy file (TOML), as loaded.")


class HeldApart(BaseModel):
    """An account holding roles the policy in force forbids together: what those roles allow is refused until an
    admin changes its roles."""

    username: str
    unit: str
    roles: list[str]
    problems: list[str]


class PolicyLoaded(BaseModel):
    version: int = Field(description="The version now in force (unchanged when the text was identical).")
    accounts_holding_forbidden_roles: list[HeldApart] = Field(
        default_factory=list, description="Accounts already holding roles this policy forbids together: resolve them.")


class PolicyVersion(BaseModel):
    version: int
    sha256: str
    loaded_by: int | None
    loaded_at: str
    active: bool
    text: str


# --- galleries ------------------------------------------------------------------------------------


class GalleryCreate(BaseModel):
    name: str = Field(max_length=100)
    allowed_sources: list[Annotated[str, Field(max_length=100)]] = Field(
        min_length=1, max_length=50, description="Provenance sources the gallery accepts, e.g. 'booking'.")
    description: str = Field("", max_length=2000)


class GalleryOut(BaseModel):
    id: int
    name: str
    description: str
    allowed_sources: list[str]
    version: int
    subjects: int
    images: int
    templates: int
    rejections: int


class CalibrationInForceOut(BaseModel):
    calibration_id: int
    scope: Literal["photographs", "gallery"] = Field(description="The gallery's own, or the model's from labelled photographs.")
    source: str = Field(description="What the estimates rest on.")
    impostor_pairs: int
    created_at: str
    created_by: str


class GalleryDetail(GalleryOut):
    searchable_by_units: list[str]
    calibration: CalibrationInForceOut | None = Field(None, description="The calibration its searches use now; null when uncalibrated.")


class CalibrationRun(BaseModel):
    pairs: int | None = Field(None, ge=1_000, le=1_000_000_000, description=(
        "Impostor pairs to sample (default: the setting calibration.pairs, 100,000,000, which resolves 1e-7)."))


class GalleryCalibrationOut(BaseModel):
    calibration_id: int
    gallery: str
    gallery_version: int
    subjects: int = Field(description="Subjects with a template, one photograph each.")
    impostor_pairs: int
    excluded_pairs: int = Field(description="Pairs closer than calibration.duplicate_distance, left out as likely one person under two ids.")
    all_pairs: bool = Field(description="Whether every pair of subjects was compared rather than a sample.")
    seed: int
    duplicate_distance: float
    resolution: float = Field(description="1 / impostor_pairs: the smallest false-match rate one pair resolves.")
    tail_fitted: bool = Field(description="Whether a tail was fitted to extrapolate below the closest pairs.")
    source: str
    seconds: float


class GrantCreate(BaseModel):
    unit: str = Field(max_length=100, description="A unit whose investigators may search the gallery, or '*' for every unit.")


class Grant(BaseModel):
    gallery: str
    unit: str


class RemovalReportOut(BaseModel):
    gallery: str
    subject_id: str
    images: int
    templates: int
    image_files: int
    index_entries: int


class DuplicatePairOut(BaseModel):
    subject_id: str = Field(description="The subject of the photograph enrolled first.")
    image_id: int
    other_subject_id: str
    other_image_id: int
    distance: float = Field(description="Lower is more alike.")


class GalleryDuplicatesOut(BaseModel):
    """Pairs of photographs of different subjects so close that they are likely one person under two ids."""

    gallery: str
    version: int = Field(description="The gallery version whose templates were compared.")
    templates: int
    max_distance: float
    pairs: list[DuplicatePairOut] = Field(description="Closest first.")
    more: bool = Field(description="More pairs are within max_distance than the limit let through.")


class IndexRetrainingRun(BaseModel):
    force: bool = Field(False, description=(
        "Retrain even though the gallery has not outgrown its inverted lists (trained again on a fresh sample)."))


class IndexRetrainingOut(BaseModel):
    gallery: str
    version: int = Field(description="The gallery version the index holds: a retraining leaves it as it was.")
    templates: int
    lists_before: int = Field(description="Inverted lists of the quantizers replaced.")
    lists_after: int = Field(description="Inverted lists trained for the gallery's size (4·√n as a power of two, at most 8,192).")
    seconds: float
    force: bool
    trigger: Literal["command", "quiet_hour"]


class EnrolOutcomeOut(BaseModel):
    file: str
    subject_id: str
    source: str
    status: Literal["enrolled", "duplicate", "rejected", "previously-rejected"]
    reason: str
    image_id: int | None
    quality: str


class EnrolBatchOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    items: int
    enrolled: int
    duplicate: int
    rejected: int
    previously_rejected: int = Field(alias="previously-rejected")
    outcomes: list[EnrolOutcomeOut]


# --- faces, searches, comparisons -----------------------------------------------------------------


class FaceOut(BaseModel):
    face: int = Field(description="Face number, 1 = largest: pass it as 'face' to a search.")
    box: list[int] = Field(description="x, y, width, height in pixels: or pass it as 'face_box' to a search.")
    detector: str
    score: float | None
    quality: dict[str, Any]


class FacesOut(BaseModel):
    format: str
    width: int
    height: int
    faces: list[FaceOut]


class FalseMatchEstimate(BaseModel):
    rate: float = Field(description="The estimated false-match rate (for a bound, the bound).")
    low: float | None = Field(description="The 95% interval's low end (few pairs or extrapolated), else null.")
    high: float | None = Field(description="The 95% interval's high end, else null.")
    basis: Literal["observed", "few", "extrapolated", "tail bound", "bound"] = Field(description=(
        "observed: ten or more impostor pairs this close; few: fewer (exact binomial interval); extrapolated: from "
        "the fitted tail of the impostor distances (bootstrap interval); tail bound / bound: an upper bound, beyond "
        "the tail's reach or with no pair and no tail."))
    impostor_pairs: int = Field(description="Impostor pairs the calibration rests on.")
    pairs_this_close: int = Field(description="Of them, at or below this distance.")
    group: str = Field(description="The group whose calibration gave the highest estimate (conservative): 'all' when the calibration of every pair did; '' without per-group calibrations.")
    text: str
    by_group: list[dict[str, Any]] | None = Field(None, description="Every calibration's estimate, when there are groups.")


class LookAlikesOut(BaseModel):
    gallery_subjects: int = Field(description="People in the gallery when the search ran.")
    expected: float = Field(description="(gallery_subjects - 1) x the false-match rate: different people expected this close by chance.")
    low: float | None
    high: float | None
    chance_any: float = Field(description="The chance that at least one different person comes this close.")
    count_text: str = Field(description="The expected count in words: 'about 2,700', 'fewer than 0.45'.")
    sentence: str = Field(description="'In this gallery of 9,012,344 people, about 2,700 would be expected ...'.")


class CandidateOut(BaseModel):
    rank: int
    subject_id: str
    image_id: int | None
    distance: float = Field(description="Lower is more alike.")
    false_match_rate: float | None = Field(description="Estimated at this distance; null when not calibrated.")
    false_match_rate_text: str = Field(description=(
        "The estimate in words, as every interface shows it, with what it rests on: '1 in 2,500 (0.040%)'; with few "
        "impostor pairs this close, their count and an exact 95% interval; below them, 'about 1 in 4,100,000, "
        "extrapolated from the fitted tail ... (95% interval ...)' or 'fewer than 1 in 78,000 (no impostor pair came "
        "this close)'; never zero; 'not calibrated'."))
    estimate: FalseMatchEstimate | None = Field(None, description="The estimate's figures; null when not calibrated.")
    look_alikes: LookAlikesOut | None = Field(None, description=(
        "How many different people of this gallery would be expected to come this close by chance, with the "
        "gallery's size when the search ran; null when not calibrated or for a search recorded before it was."))


class SearchResultOut(BaseModel):
    """A completed search: a ranked list of investigative leads, never an identification."""

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
    candidates: list[CandidateOut]
    gallery_subjects: int | None = Field(None, description="People in the gallery when the search ran.")
    calibration: str | None = Field(None, description="What the estimates rest on; null when not calibrated.")
    notice: str


class ComparisonOut(BaseModel):
    search_id: int
    policy_version: int
    case_number: str
    distance: float
    false_match_rate: float | None
    false_match_rate_text: str = Field(description="The estimate in words (as for a search's candidates).")
    probe_sha256: str
    second_sha256: str
    estimate: FalseMatchEstimate | None = None
    notice: str


class Comparison(BaseModel):
    features: dict[Feature, Finding] = Field(default_factory=dict, description=(
        "What you found of each feature (FISWG's feature list, top level): similar, dissimilar or not_visible."))
    conclusion: Conclusion = Field(description="Your conclusion on the stated scale; it must agree with the decision.")


class DecisionShown(BaseModel):
    examiner: str
    decision: str
    notes: str
    comparison: Comparison | None = Field(None, description="The examiner's structured comparison, if recorded.")


class CandidateShown(CandidateOut):
    subject_id: str | None = Field(description="Withheld (null) from an examiner blind to the algorithm until they decide.")
    distance: float | None = Field(description="Lower is more alike; withheld (null) like subject_id.")
    false_match_rate_text: str | None = Field(description="As for a search's candidates; withheld (null) like subject_id.")
    label: str | None = Field(None, description=(
        "For an examiner blind to the algorithm: a neutral name (A, B, ...) in an order of their own, not the rank's."))
    withheld: bool = Field(False, description="Whether the algorithm's figures are withheld until you decide.")
    lead: bool = Field(False, description=(
        "A lead verified under the two-person rule, marked for the investigator who ran the search and supervisors."))
    decisions: list[DecisionShown] = Field(description=(
        "Only your own, unless you are a supervisor (blind review); every one of a lead to those who see it marked."))


class SearchDetail(BaseModel):
    search_id: int
    investigator: str
    case_number: str
    gallery: str
    gallery_version: int | None
    policy_version: int | None
    purpose: str
    offence: str
    face_box: list[int] | None
    quality: dict[str, Any] | None
    started_at: str
    impostor_pairs: int | None = Field(None, description=(
        "Impostor pairs of the calibration in force when the search ran; null when not calibrated."))
    calibration: str | None = Field(None, description="What the estimates rest on, as recorded with the search.")
    gallery_subjects: int | None = Field(None, description="People in the gallery when the search ran.")
    outcome: str | None = Field(description="Shown to the investigator who ran the search and to supervisors.")
    candidates: list[CandidateShown]
    blind_to_algorithm: bool = Field(False, description=(
        "Whether you review blind to the algorithm (policy review.examiners_blind_to_algorithm): candidates in an "
        "order of your own, each one's distance, false-match rate, subject id and image id withheld until you decide "
        "on it; its rank stays the handle for its photographs and your decision."))
    notice: str


class MySearch(BaseModel):
    search_id: int
    kind: Literal["search", "compare"]
    status: Literal["completed", "refused"]
    refusal_reason: str
    case_number: str
    purpose: str
    offence: str
    gallery: str
    started_at: dt.datetime
    candidates: int
    outcome: str | None = Field(description="lead, disputed, no_lead, pending_review, no_candidates or refused; null for a comparison.")


# --- review ---------------------------------------------------------------------------------------


class QueueItem(BaseModel):
    search_id: int
    case_number: str
    gallery: str
    purpose: str
    offence: str
    started_at: str
    candidates: int


class DecisionIn(BaseModel):
    rank: int = Field(ge=1, le=1000)
    decision: Decision
    notes: str = Field("", max_length=10_000)
    comparison: Comparison | None = Field(None, description="Your structured comparison (examiners' decisions only).")


class DecisionRecorded(BaseModel):
    search_id: int
    rank: int
    decision: str
    outcome: str = Field(description="The search's outcome afterwards.")


class DisputeDecision(BaseModel):
    examiner_id: int
    examiner: str
    decision: str
    notes: str


class Dispute(BaseModel):
    search_id: int
    rank: int
    subject_id: str
    case_number: str
    investigator: str
    decisions: list[DisputeDecision]


# --- quality overrides ----------------------------------------------------------------------------


class OverrideRequested(BaseModel):
    request_id: int = Field(description="The request, waiting for a supervisor of your unit.")


class OverrideRequestOut(BaseModel):
    """A request that a supervisor approve a search with a poor-quality probe."""

    request_id: int
    status: Literal[OVERRIDE_STATUSES] = Field(  # type: ignore[valid-type]
        description="pending; approved (the search ran: search_id); declined; or refused (approved, but the search "
                    "was then refused: refusal_reason).")
    investigator: str
    unit: str
    gallery: str
    case_number: str
    purpose: str
    offence: str
    authorization_ref: str
    note: str
    policy_version: int
    face_box: list[int]
    quality: dict[str, Any]
    quality_reasons: list[str] = Field(description="Why the probe's quality is poor.")
    requested_at: dt.datetime
    probe_stored: bool = Field(description="False once the probe is purged under the retention policy.")
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_notes: str
    search_id: int | None
    refusal_reason: str


class OverrideDecisionIn(BaseModel):
    approve: bool = Field(description="true runs the search as the investigator's, marked as overridden by you.")
    notes: str = Field("", max_length=10_000, description="Why; kept in the audit trail.")


class OverrideDecided(BaseModel):
    request_id: int
    status: Literal["approved", "declined"]
    search_id: int | None = Field(description="The search the approval ran; null when declined.")


# --- oversight ------------------------------------------------------------------------------------


class AuditVerificationOut(BaseModel):
    ok: bool
    entries: int
    checkpoints: int
    first_bad_seq: int | None
    problem: str
    unwitnessed: dict[str, list[int]] = {}
    """Per witness, the counts of signed checkpoints it does not hold yet (a gap, not tampering)."""
    unreachable: dict[str, str] = {}
    """Witnesses whose heads could not be read, and why."""


class CaseAuditEntry(BaseModel):
    """An audit entry as the case view lists it."""

    seq: int
    recorded_at: str
    actor: str
    action: str
    target: str
    details: dict[str, Any]


class AuditEntryOut(CaseAuditEntry):
    """An audit entry with the hashes that chain it to the one before."""

    prev_hash: str
    entry_hash: str


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: bool = Field(description="The database answers.")
    audit_key: Literal["present", "not_created_yet", "missing"] = Field(
        description="The audit signing key file: created with the first signed checkpoint.")


def describe_faces(decoded: DecodedImage, faces: list[FoundFace]) -> FacesOut:
    """The faces found in a decoded photograph, largest first, with boxes and quality."""
    return FacesOut(
        format=decoded.format, width=decoded.pixels.shape[1], height=decoded.pixels.shape[0],
        faces=[FaceOut(face=number, box=face.detection.box.as_list(), detector=face.detection.detector,
                       score=face.detection.score, quality=face.quality.to_dict())
               for number, face in enumerate(faces, start=1)],
    )


# --- the case view -----------------------------------------------------------------------------------------------


class CaseSearch(MySearch):
    investigator: str
    quality_override_by: str | None = Field(description="The supervisor who approved a poor-quality probe, if one did.")


class CaseOverride(BaseModel):
    request_id: int
    investigator: str
    status: str = Field(description="pending, approved, declined or refused.")
    requested_at: str
    decided_by: str | None
    decided_at: str | None
    decision_notes: str
    search_id: int | None = Field(description="The search the approval ran.")
    refusal_reason: str


class CaseDecision(BaseModel):
    search_id: int
    rank: int
    by: str
    role: Literal["examiner", "supervisor"] = Field(description="An examiner's decision or a supervisor's ruling.")
    decision: str
    comparison: Comparison | None
    notes: str
    decided_at: str


class CaseView(BaseModel):
    """Everything under one case number that the caller may see."""

    case_number: str
    unit: str | None = Field(description="The only unit whose part of the case is shown; null: every unit.")
    partial: bool = Field(description="True when the case has more searches or requests than are shown (500).")
    searches: list[CaseSearch] = Field(description="Searches and comparisons, completed or refused, newest first.")
    refusals: list[CaseSearch] = Field(description="The refused ones among them.")
    leads: list[int] = Field(description="Searches with a verified lead (GET /leads/{search_id} for the report).")
    overrides: list[CaseOverride] = Field(description="Requests for a supervisor's approval of a poor-quality probe.")
    decisions: list[CaseDecision] = Field(description=(
        "Examiners' decisions and supervisors' rulings, oldest first; on a search you may still decide on, only yours."))
    audit: list[CaseAuditEntry] = Field(description=(
        "Audit entries about the case, its searches and requests: who did or looked at what, when."))
