"""Enrolment jobs: photographs uploaded through a page are enrolled in a background thread while the page shows the
progress. The jobs live in this server process's memory; the enrolments themselves are stored and audited."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from facetrail.accountability.service import Facetrail
from facetrail.accountability.users import Actor
from facetrail.api.routes.galleries import enrol_uploads
from facetrail.errors import FacetrailError
from facetrail.gallery.enrol import EnrolOutcome
from facetrail.store import utcnow

logger = logging.getLogger("facetrail.web")

OUTCOME_STATUSES = ("enrolled", "duplicate", "rejected", "previously-rejected")
KEPT_JOBS = 100
"""Finished jobs remembered; older ones are forgotten first."""


@dataclass
class EnrolmentJob:
    """One upload being enrolled: how far it got and each file's outcome so far."""

    id: int
    gallery: str
    started_by: str
    total: int
    started_at: dt.datetime = field(default_factory=utcnow)
    finished_at: dt.datetime | None = None
    error: str | None = None
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def running(self) -> bool:
        return self.finished_at is None

    def record(self, outcome: EnrolOutcome) -> None:
        """Note one file's outcome (called by the enrolment as each is known)."""
        item = outcome.item
        with self._lock:
            self.outcomes.append({"file": item.extra.get("uploaded_as", item.path.name), "subject_id": item.subject_id,
                                  "source": item.source, "status": outcome.status, "reason": outcome.reason,
                                  "quality": outcome.quality, "image_id": outcome.image_id})

    def finish(self, error: str | None = None) -> None:
        """The job has ended, completely or with ``error``."""
        with self._lock:
            self.error, self.finished_at = error, utcnow()

    def to_dict(self) -> dict[str, Any]:
        """A snapshot: state ('running', 'finished' or 'failed'), done of total, counts per outcome status and each
        file's outcome so far."""
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
            }


class EnrolmentJobs:
    """The enrolment jobs of this server process, each run by its own thread."""

    def __init__(self) -> None:
        self._jobs: dict[int, EnrolmentJob] = {}
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, system: Facetrail, actor: Actor, gallery: str, files: list[tuple]) -> EnrolmentJob:
        """Enrol ``(file name, bytes, subject_id, source, capture_date, extra)`` items into ``gallery`` as ``actor``
        in a new thread (searches go on meanwhile); the job, to follow its progress."""
        with self._lock:
            job = EnrolmentJob(next(self._numbers), gallery, actor.username, len(files))
            self._jobs[job.id] = job
            finished = [j.id for j in self._jobs.values() if not j.running]
            for old in finished[:max(0, len(finished) - KEPT_JOBS)]:
                del self._jobs[old]
        worker = threading.Thread(target=_run, args=(job, system, actor, files),
                                  name=f"enrolment-job-{job.id}", daemon=True)
        worker.start()
        return job

    def get(self, job_id: int) -> EnrolmentJob | None:
        """The job with this number, if this process still knows it."""
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[EnrolmentJob]:
        """Every job known, newest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda job: job.id, reverse=True)


def _run(job: EnrolmentJob, system: Facetrail, actor: Actor, files: list[tuple]) -> None:
    try:
        enrol_uploads(system, actor, job.gallery, files, job.record)
    except FacetrailError as exc:
        job.finish(str(exc))
    except Exception:
        logger.exception("enrolment job %s failed", job.id)
        job.finish("the enrolment stopped on an internal error; the server's log has the details")
    else:
        job.finish()


def get_jobs(request: Request) -> EnrolmentJobs:
    return request.app.state.enrolment_jobs


Jobs = Annotated[EnrolmentJobs, Depends(get_jobs)]
