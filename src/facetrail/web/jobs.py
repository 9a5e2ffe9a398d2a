"""Enrolment jobs: photographs uploaded through a page are enrolled in a background thread while the page shows the
progress. The server process running a job keeps it in memory and writes a snapshot of it to ``DATA/jobs/<id>.json``
as it goes, so every server process on the machine (``facetrail serve --workers N``) can show it; the enrolments
themselves are stored and audited. The thumbnails of the photographs a job rejected are kept, encrypted, for as long
as the job (``Facetrail.rejected_photos``)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request

from facetrail.accountability.service import Facetrail
from facetrail.accountability.service import Actor
from facetrail.http.enrolment import enrol_uploads
from facetrail.errors import FacetrailError
from facetrail.engine.scheduling import Workforce
from facetrail.storage import write_atomically
from facetrail.gallery.enrol import EnrolItem, EnrolOutcome
from facetrail.store import utcnow

logger = logging.getLogger("facetrail.web")

OUTCOME_STATUSES = ("enrolled", "duplicate", "rejected", "previously-rejected")
REJECTED_STATUSES = ("rejected", "previously-rejected")
"""The outcomes whose photograph the job keeps a thumbnail of."""
KEPT_JOBS = 100
"""Finished jobs remembered; older ones are forgotten first."""
SAVE_EVERY_S = 0.5
"""A running job's snapshot is rewritten at most this often (and when it ends)."""
ORPHANED = ("the server process running this job stopped before it finished; what it enrolled is stored and audited: "
            "upload the photographs again to enrol the rest (those already enrolled are skipped)")


@dataclass
class EnrolmentJob:
    """One upload being enrolled: how far it got and each file's outcome so far."""

    id: int
    gallery: str
    started_by: str
    total: int
    snapshot_path: Path
    started_at: dt.datetime = field(default_factory=utcnow)
    finished_at: dt.datetime | None = None
    error: str | None = None
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    workforce: Workforce | None = None
    """The Ray nodes and workers doing the face work, on a cluster (None: this server process does it)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _saved_at: float = 0.0

    @property
    def running(self) -> bool:
        return self.finished_at is None

    def record(self, outcome: EnrolOutcome, thumbnail: str | None = None) -> None:
        """Note one file's outcome (called by the enrolment as each is known), with the key of the thumbnail kept of
        a rejected photograph."""
        item = outcome.item
        with self._lock:
            self.outcomes.append({"file": item.path.name, "subject_id": item.subject_id,
                                  "source": item.source, "status": outcome.status, "reason": outcome.reason,
                                  "quality": outcome.quality, "image_id": outcome.image_id, "thumbnail": thumbnail})
        if time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self.save()

    def staffed(self, workforce: Workforce) -> None:
        """Note who is doing the face work (called at the start and when a Ray node or worker is lost)."""
        with self._lock:
            self.workforce = workforce
        self.save()

    def finish(self, error: str | None = None) -> None:
        """The job has ended, completely or with ``error``."""
        with self._lock:
            self.error, self.finished_at = error, utcnow()
        self.save()

    def save(self) -> None:
        """Write the snapshot other server processes read (``to_dict`` and this process's id)."""
        self._saved_at = time.monotonic()
        snapshot = json.dumps({**self.to_dict(), "pid": os.getpid()}).encode("utf-8")
        try:
            write_atomically(self.snapshot_path, lambda handle: handle.write(snapshot))
        except OSError:
            logger.exception("cannot write the snapshot of enrolment job %s", self.id)

    def to_dict(self) -> dict[str, Any]:
        """A snapshot: state ('running', 'finished' or 'failed'), done of total, counts per outcome status, each
        file's outcome so far and, on a Ray cluster, the nodes and workers working (``Workforce``) and in words."""
        with self._lock:
            outcomes = list(self.outcomes)
            state = "running" if self.running else ("failed" if self.error else "finished")
            return {
                "id": self.id, "gallery": self.gallery, "started_by": self.started_by, "state": state,
                "started_at": self.started_at.isoformat(),
                "finished_at": self.finished_at.isoformat() if self.finished_at else None,
                "error": self.error, "total": self.total, "done": len(outcomes),
                "counts": {status: sum(1 for o in outcomes if o["status"] == status) for status in OUTCOME_STATUSES},
                "outcomes": outcomes,
                "workforce": None if self.workforce is None else {**self.workforce.to_dict(),
                                                                  "described": self.workforce.describe()},
            }


class EnrolmentJobs:
    """The enrolment jobs of every server process using ``folder`` (``DATA/jobs``): those this process runs, each in
    a thread of its own, and the snapshots the others write."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._running: dict[int, EnrolmentJob] = {}
        self._lock = threading.Lock()

    def start(self, system: Facetrail, actor: Actor, gallery: str, files: list[EnrolItem]) -> EnrolmentJob:
        """Enrol uploaded photographs (items holding their bytes) into ``gallery`` as ``actor`` in a new thread
        (searches go on meanwhile); the job, to follow its progress."""
        self.folder.mkdir(mode=0o700, exist_ok=True)
        job_id = self._claim_number()
        job = EnrolmentJob(job_id, gallery, actor.username, len(files), self._path(job_id))
        with self._lock:
            self._running[job.id] = job
        job.save()
        self._forget_old(system, actor)
        worker = threading.Thread(target=_run, args=(job, system, actor, files, self),
                                  name=f"enrolment-job-{job.id}", daemon=True)
        worker.start()
        return job

    def get(self, job_id: int) -> dict[str, Any] | None:
        """The snapshot of the job with this number, if a server process still knows it."""
        with self._lock:
            job = self._running.get(job_id)
        return job.to_dict() if job is not None else self._read(self._path(job_id))

    def all(self) -> list[dict[str, Any]]:
        """The snapshot of every job known, newest first."""
        found = (self.get(number) for number in sorted(self._numbers(), reverse=True))
        return [job for job in found if job is not None]

    def done(self, job: EnrolmentJob) -> None:
        """``job`` has ended: its snapshot file is what remains of it."""
        with self._lock:
            self._running.pop(job.id, None)

    def _path(self, job_id: int) -> Path:
        return self.folder / f"{job_id}.json"

    def _numbers(self) -> list[int]:
        return [int(path.stem) for path in self.folder.glob("*.json") if path.stem.isdigit()]

    def _claim_number(self) -> int:
        """The next job number, unique among the processes sharing the folder (its file is created exclusively)."""
        while True:
            number = max(self._numbers(), default=0) + 1
            try:
                os.close(os.open(self._path(number), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                return number
            except FileExistsError:
                continue

    def _read(self, path: Path) -> dict[str, Any] | None:
        """A snapshot written by a server process; a running job whose process has gone is reported failed."""
        try:
            job = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # just claimed, not yet written, or damaged
            return None
        pid = job.pop("pid", None)
        if job["state"] == "running" and (pid == os.getpid() or not _alive(pid)):  # not among this process's own
            job.update(state="failed", error=ORPHANED)
        return job

    def _forget_old(self, system: Facetrail, actor: Actor) -> None:
        """Delete the snapshots, and the thumbnails of rejected photographs, of all but the newest KEPT_JOBS finished
        jobs (as ``actor``, who starts a job)."""
        finished = [job for n in sorted(self._numbers()) if (job := self.get(n)) is not None and job["state"] != "running"]
        for job in finished[:max(0, len(finished) - KEPT_JOBS)]:
            system.rejected_photos.forget(actor, job["gallery"], job["id"])
            self._path(job["id"]).unlink(missing_ok=True)


def _alive(pid: Any) -> bool:
    """Whether a process with this id runs on this machine."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _run(job: EnrolmentJob, system: Facetrail, actor: Actor, files: list[EnrolItem], jobs: EnrolmentJobs) -> None:
    def record(outcome: EnrolOutcome) -> None:
        """Note the outcome, keeping a thumbnail of a rejected upload; a thumbnail that cannot be kept (a full disk,
        say) leaves the enrolment going, the row without one."""
        thumbnail = None
        if outcome.status in REJECTED_STATUSES and outcome.item.data is not None:
            try:
                thumbnail = system.rejected_photos.keep(actor, job.gallery, job.id, outcome.item.data)
            except (OSError, FacetrailError):
                logger.exception("enrolment job %s cannot keep the thumbnail of %s", job.id, outcome.item.path.name)
        job.record(outcome, thumbnail)

    try:
        enrol_uploads(system, actor, job.gallery, files, record, job.staffed)
    except FacetrailError as exc:
        job.finish(str(exc))
    except Exception:
        logger.exception("enrolment job %s failed", job.id)
        job.finish("the enrolment stopped on an internal error; the server's log has the details")
    else:
        job.finish()
    finally:
        jobs.done(job)


def get_jobs(request: Request) -> EnrolmentJobs:
    return request.app.state.enrolment_jobs


Jobs = Annotated[EnrolmentJobs, Depends(get_jobs)]
