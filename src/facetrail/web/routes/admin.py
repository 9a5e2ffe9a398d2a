"""Administrators: accounts and roles, galleries (unit grants, enrolment jobs, likely duplicates, expungement) and the
policy."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from facetrail.accountability.schema import ROLES
from facetrail.accountability.service import Facetrail, RoleChange
from facetrail.accountability.service import Actor
from facetrail.http.deps import MAX_ID, SystemDep
from facetrail.http.files import read_upload, upload_name
from facetrail.http.enrolment import manifest_files
from facetrail.errors import FacetrailError, NotFoundError
from facetrail.accountability.service import SUBJECT_ID_MAX
from facetrail.gallery.duplicates import HOW_TO_RESOLVE, MAX_PAIRS
from facetrail.gallery.enrol import EnrolItem, uploaded
from facetrail.gallery.manifest import MANIFEST_COLUMNS
from facetrail.web.jobs import KEPT_JOBS, REJECTED_STATUSES, EnrolmentJobs, Jobs
from facetrail.web.pages import error_of, render
from facetrail.web.routes.photos import picture_response
from facetrail.web.session import FormActor, WebActor

router = APIRouter(prefix="/admin")

Username = Annotated[str, Path(max_length=100)]
GalleryName = Annotated[str, Path(max_length=100)]
JobId = Annotated[int, Path(ge=1, le=MAX_ID)]
ThumbnailKey = Annotated[str, Path(pattern="^[0-9a-f]{64}$")]
Done = Annotated[str, Query(max_length=20)]

POLICY_MAX_CHARS = 500_000
ENROL_BADGES = {"enrolled": "good", "duplicate": "", "rejected": "bad", "previously-rejected": "warn"}
"""Enrolment outcome status -> badge style."""

USER_CHANGES = {
    "created": "Account {} created.",
    "roles": "The roles of {} are changed; they apply from the user's next request.",
    "roles_pending": ("The roles asked for {} are recorded and wait for a second person (an admin, or a supervisor of "
                      "the account's unit, whose account is older than the request and was not created by you) to "
                      "confirm them within 24 hours; until then the account holds only roles that do not see "
                      "photographs."),
    "confirmed": "The roles of {} are confirmed; they apply from the user's next request.",
    "enabled": "{} may log in again.",
    "disabled": "{} is deactivated and logged out everywhere.",
    "unlocked": "{} is unlocked.",
}
GALLERY_CHANGES = {
    "created": "The gallery is created. Grant it to the units that may search it, then enrol photographs.",
    "granted": "The grant is recorded.",
    "revoked": "The grant is withdrawn.",
    "expunged": "The subject is expunged: their images, templates, stored photographs and index entries are removed.",
    "calibrated": "The gallery's own calibration is in force: its searches estimate false-match rates and look-alike counts from it.",
}
POLICY_CHANGES = {
    "loaded": "Policy version {} is now in force.",
    "unchanged": "The text is the policy in force already: version {} stays in force.",
}


def _done(changes: dict[str, str], done: str, *names: Any) -> str | None:
    """The message for the change a redirect reports (None for an unknown one)."""
    return changes[done].format(*names) if done in changes else None


# --- users ------------------------------------------------------------------------------------------------------------


def _users_page(request: Request, users: list[dict], status: int = 200, **context: Any) -> HTMLResponse:
    return render(request, "admin_users.html", {"users": users, "roles": ROLES, "values": {}, **context}, status)


@router.get("/users", response_class=HTMLResponse)
def users(request: Request, actor: WebActor, system: SystemDep, done: Done = "",
          user: Annotated[str, Query(max_length=100)] = "") -> HTMLResponse:
    """Every account with its roles and state, a form per account to change them, and a form to create one."""
    system.require(actor, "manage_users")
    accounts = system.admin.list_users(actor)
    known = any(account["username"] == user for account in accounts)
    return _users_page(request, accounts, message=_done(USER_CHANGES, done, user) if known else None)


def _change_user(request: Request, system: Facetrail, actor: Actor, change: Callable[[], object], done: str,
                 username: str, values: dict[str, Any] | None = None):
    """Make an account change through the service, then back to the list; a refusal shows the list with why."""
    system.require(actor, "manage_users")
    try:
        result = change()
    except FacetrailError as exc:
        status, message, _ = error_of(exc)
        return _users_page(request, system.admin.list_users(actor), status, error=message, values=values or {})
    if isinstance(result, RoleChange) and result.pending:
        done = "roles_pending"
    return RedirectResponse("/admin/users?" + urlencode({"done": done, "user": username}), status_code=303)


@router.post("/users")
def create_user(
    request: Request,
    actor: FormActor,
    system: SystemDep,
    username: Annotated[str, Form(max_length=100)] = "",
    display_name: Annotated[str, Form(max_length=200)] = "",
    unit: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    roles: Annotated[list[str] | None, Form(max_length=len(ROLES))] = None,
):
    """Create an account; the policy must allow its combination of roles (audited)."""
    values = {"username": username, "display_name": display_name, "unit": unit, "roles": roles or []}
    return _change_user(
        request, system, actor,
        lambda: system.admin.create_user(actor, username.strip(), password, roles or [], unit, display_name.strip()),
        "created", username.strip(), values)


@router.post("/users/{username}/roles")
def set_roles(request: Request, username: Username, actor: FormActor, system: SystemDep,
              roles: Annotated[list[str] | None, Form(max_length=len(ROLES))] = None):
    """Replace an account's roles (audited)."""
    return _change_user(request, system, actor, lambda: system.admin.set_roles(actor, username, roles or []), "roles", username)


@router.post("/users/{username}/confirm")
def confirm_roles(request: Request, username: Username, actor: FormActor, system: SystemDep):
    """Confirm, as the second person, the roles another admin asked for an account (audited; a refusal says why)."""
    return _change_user(request, system, actor, lambda: system.admin.confirm_roles(actor, username), "confirmed",
                        username)


@router.post("/users/{username}/active")
def set_active(request: Request, username: Username, actor: FormActor, system: SystemDep,
               active: Annotated[bool, Form()]):
    """Activate or deactivate an account; deactivating ends its sessions (audited)."""
    return _change_user(request, system, actor, lambda: system.admin.set_active(actor, username, active),
                        "enabled" if active else "disabled", username)


@router.post("/users/{username}/unlock")
def unlock(request: Request, username: Username, actor: FormActor, system: SystemDep):
    """Lift a lockout after repeated failed logins (audited)."""
    return _change_user(request, system, actor, lambda: system.admin.unlock(actor, username), "unlocked", username)


# --- galleries --------------------------------------------------------------------------------------------------------


def _galleries_page(request: Request, system: Facetrail, actor: Actor, status: int = 200, **context: Any) -> HTMLResponse:
    units: dict[int, list[str]] = defaultdict(list)
    for grant in system.admin.grants(actor):
        units[grant["gallery_id"]].append(grant["unit"])
    return render(request, "admin_galleries.html",
                  {"galleries": system.admin.galleries(actor), "units": units, "values": {}, **context}, status)


@router.get("/galleries", response_class=HTMLResponse)
def galleries(request: Request, actor: WebActor, system: SystemDep) -> HTMLResponse:
    """Every gallery with its allowed sources, counts and the units that may search it; a form to create one."""
    system.require(actor, "manage_galleries")
    return _galleries_page(request, system, actor)


@router.post("/galleries")
def create_gallery(
    request: Request,
    actor: FormActor,
    system: SystemDep,
    name: Annotated[str, Form(max_length=100)] = "",
    description: Annotated[str, Form(max_length=2000)] = "",
    allowed_sources: Annotated[str, Form(max_length=2000)] = "",
):
    """Create a gallery accepting photographs from the given provenance sources (comma-separated; audited)."""
    system.require(actor, "manage_galleries")
    sources = [source.strip() for source in allowed_sources.split(",") if source.strip()]
    try:
        system.admin.create_gallery(actor, name.strip(), sources, description.strip())
    except FacetrailError as exc:
        status, message, _ = error_of(exc)
        values = {"name": name, "description": description, "allowed_sources": allowed_sources}
        return _galleries_page(request, system, actor, status, error=message, values=values)
    return RedirectResponse(f"/admin/galleries/{quote(name.strip())}?done=created", status_code=303)


def _gallery_page(request: Request, system: Facetrail, actor: Actor, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return render(request, "admin_gallery.html", {
        "gallery": system.admin.gallery(actor, name), "grants": system.admin.grants(actor, name),
        "calibration": system.calibrations.in_force(actor, name),
        "subject_id_max": SUBJECT_ID_MAX,
        "manifest_columns": MANIFEST_COLUMNS,
        **context,
    }, status)


@router.get("/galleries/{name}", response_class=HTMLResponse)
def gallery(request: Request, name: GalleryName, actor: WebActor, system: SystemDep, done: Done = "") -> HTMLResponse:
    """One gallery: its grants, expunging a subject, and enrolling photographs."""
    system.require(actor, "manage_galleries")
    return _gallery_page(request, system, actor, name, message=_done(GALLERY_CHANGES, done))


def _change_gallery(request: Request, system: Facetrail, actor: Actor, name: str, change: Callable[[], object],
                    done: str):
    """Make a gallery change through the service, then back to its page; a refusal shows the page with why."""
    system.require(actor, "manage_galleries")
    try:
        change()
    except FacetrailError as exc:
        status, message, _ = error_of(exc)
        return _gallery_page(request, system, actor, name, status, error=message)
    return RedirectResponse(f"/admin/galleries/{quote(name)}?done={done}", status_code=303)


@router.post("/galleries/{name}/grants")
def grant(request: Request, name: GalleryName, actor: FormActor, system: SystemDep,
          unit: Annotated[str, Form(max_length=100)] = ""):
    """Let a unit's investigators ('*': every unit) search the gallery (audited)."""
    return _change_gallery(request, system, actor, name, lambda: system.admin.grant_gallery(actor, name, unit), "granted")


@router.post("/galleries/{name}/revocations")
def revoke(request: Request, name: GalleryName, actor: FormActor, system: SystemDep,
           unit: Annotated[str, Form(max_length=100)] = ""):
    """Withdraw a unit's grant (audited)."""
    return _change_gallery(request, system, actor, name, lambda: system.admin.revoke_gallery(actor, name, unit), "revoked")


@router.post("/galleries/{name}/calibrations")
def calibrate(request: Request, name: GalleryName, actor: FormActor, system: SystemDep):
    """Calibrate from the gallery's own subjects (calibration.pairs pairs; audited)."""
    return _change_gallery(request, system, actor, name, lambda: system.calibrations.calibrate_gallery(actor, name), "calibrated")


@router.post("/galleries/{name}/expungements")
def expunge(request: Request, name: GalleryName, actor: FormActor, system: SystemDep,
            subject_id: Annotated[str, Form(max_length=SUBJECT_ID_MAX)] = "",
            confirm: Annotated[bool, Form()] = False):
    """Remove a subject's images, templates, stored photographs and index entries, once confirmed (audited)."""

    def remove() -> None:
        if not confirm:
            raise FacetrailError("tick the box to confirm that the subject's photographs are to be removed for good")
        system.admin.remove_subject(actor, name, subject_id.strip())

    return _change_gallery(request, system, actor, name, remove, "expunged")


@router.post("/galleries/{name}/enrolments")
def start_enrolment(
    request: Request,
    name: GalleryName,
    actor: FormActor,
    system: SystemDep,
    jobs: Jobs,
    images: Annotated[list[UploadFile] | None, File()] = None,
    manifest: Annotated[UploadFile | None, File()] = None,
    subject_id: Annotated[str, Form(max_length=SUBJECT_ID_MAX)] = "",
    source: Annotated[str, Form(max_length=100)] = "",
):
    """Start enrolling the uploaded photographs in the background, each by its manifest row or all as one subject;
    then follow the job's progress."""
    system.require(actor, "enrol")
    try:
        system.admin.gallery(actor, name)
        files = _uploaded_files([i for i in images or [] if i.filename], manifest, subject_id.strip(), source.strip())
    except FacetrailError as exc:
        status, message, _ = error_of(exc)
        return _gallery_page(request, system, actor, name, status, error=message)
    job = jobs.start(system, actor, name, files)
    return RedirectResponse(f"/admin/jobs/{job.id}", status_code=303)


def _uploaded_files(images: list[UploadFile], manifest: UploadFile | None, subject_id: str, source: str) -> list[EnrolItem]:
    """The photographs as enrolment items: by the manifest's rows when one is uploaded, else all of ``subject_id``."""
    if not images:
        raise FacetrailError("choose at least one photograph to enrol")
    manifest_text = ""
    if manifest is not None and manifest.filename:
        try:
            manifest_text = read_upload(manifest).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise FacetrailError("the manifest must be a CSV file in UTF-8") from None
    if manifest_text.strip():
        return manifest_files(images, manifest_text, source or None)
    if not subject_id or not source:
        raise FacetrailError("give a manifest, or one subject id and a source for all the photographs")
    return [uploaded(upload_name(image, f"image-{number}"), read_upload(image), subject_id, source)
            for number, image in enumerate(images, start=1)]


# --- likely duplicates -----------------------------------------------------------------------------------------------


@router.get("/galleries/{name}/duplicates", response_class=HTMLResponse)
def duplicates(request: Request, name: GalleryName, actor: WebActor, system: SystemDep,
               max_distance: Annotated[float | None, Query(gt=0, lt=2)] = None,
               limit: Annotated[int, Query(ge=1, le=MAX_PAIRS)] = 100) -> HTMLResponse:
    """Pairs of photographs of different subjects so close that they are likely one person under two ids, closest
    first, and how the agency resolves them (the listing is audited)."""
    system.require(actor, "manage_galleries")
    return render(request, "admin_duplicates.html", {
        "found": system.admin.duplicates(actor, name, max_distance, limit), "limit": limit, "max_pairs": MAX_PAIRS,
        "how_to_resolve": HOW_TO_RESOLVE})


# --- enrolment jobs ---------------------------------------------------------------------------------------------------


def _job(jobs: EnrolmentJobs, job_id: int) -> dict:
    job = jobs.get(job_id)
    if job is None:
        raise NotFoundError(f"no enrolment job {job_id}: the server knows the last {KEPT_JOBS} jobs only (the audit "
                            "trail records every enrolment)")
    return job


@router.get("/jobs", response_class=HTMLResponse)
def job_list(request: Request, actor: WebActor, jobs: Jobs, system: SystemDep) -> HTMLResponse:
    """The enrolment jobs the server has run, newest first."""
    system.require(actor, "enrol")
    return render(request, "admin_jobs.html", {"jobs": jobs.all()})


@router.get("/jobs/{job_id}.json")
def job_json(job_id: JobId, actor: WebActor, jobs: Jobs, system: SystemDep) -> JSONResponse:
    """An enrolment job's progress, for the job page's script."""
    system.require(actor, "enrol")
    return JSONResponse(_job(jobs, job_id))


@router.get("/jobs/{job_id}/rejected/{key}.jpg")
def rejected_photo(job_id: JobId, key: ThumbnailKey, actor: WebActor, jobs: Jobs, system: SystemDep) -> Response:
    """The thumbnail of a photograph the job rejected (admins; the view is audited)."""
    system.require(actor, "enrol")
    job = _job(jobs, job_id)
    if key not in {outcome.get("thumbnail") for outcome in job["outcomes"]}:
        raise NotFoundError(f"enrolment job {job_id} keeps no such rejected photograph")
    return picture_response(system.rejected_photos.view(actor, job["gallery"], job_id, key))


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: JobId, actor: WebActor, jobs: Jobs, system: SystemDep) -> HTMLResponse:
    """An enrolment job's progress, counts per outcome and each file's outcome with its reason."""
    system.require(actor, "enrol")
    return render(request, "admin_job.html", {"job": _job(jobs, job_id), "badges": ENROL_BADGES,
                                              "rejected_statuses": REJECTED_STATUSES})


# --- policy -----------------------------------------------------------------------------------------------------------


def _policy_page(request: Request, system: Facetrail, actor: Actor, text: str | None = None, status: int = 200,
                 **context: Any) -> HTMLResponse:
    version, in_force = system.admin.policy_in_force(actor)
    names = {account["id"]: account["username"] for account in system.admin.list_users(actor)}
    history = [{**entry, "loaded_by": names.get(entry["loaded_by"], "system")}
               for entry in reversed(system.admin.policy_history(actor))]
    return render(request, "admin_policy.html", {
        "version": version, "in_force": in_force, "history": history,
        "held_apart": system.admin.roles_held_apart(actor),
        "text": in_force if text is None else text, **context,
    }, status)


@router.get("/policy", response_class=HTMLResponse)
def policy(request: Request, actor: WebActor, system: SystemDep, done: Done = "") -> HTMLResponse:
    """The policy in force, every version loaded, and a form to load a new one."""
    system.require(actor, "manage_policy")
    return _policy_page(request, system, actor, message=_done(POLICY_CHANGES, done, system.admin.policy_in_force(actor)[0]))


@router.post("/policy")
def load_policy(
    request: Request,
    actor: FormActor,
    system: SystemDep,
    text: Annotated[str, Form(max_length=POLICY_MAX_CHARS)] = "",
    policy_file: Annotated[UploadFile | None, File()] = None,
):
    """Load the text (or the uploaded file) as the next policy version; an invalid one is refused with every problem
    and its line, and the policy in force stays (both audited)."""
    system.require(actor, "manage_policy")
    before, _ = system.admin.policy_in_force(actor)
    text = text.replace("\r\n", "\n")
    try:
        if policy_file is not None and policy_file.filename:
            text = _policy_file_text(policy_file)
        version = system.admin.load_policy(actor, text)
    except FacetrailError as exc:
        status, message, problems = error_of(exc)
        return _policy_page(request, system, actor, text, status, error=message, problems=problems)
    return RedirectResponse("/admin/policy?done=" + ("loaded" if version != before else "unchanged"), status_code=303)


def _policy_file_text(upload: UploadFile) -> str:
    try:
        return read_upload(upload).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FacetrailError("the policy file must be UTF-8 text (TOML)") from None
