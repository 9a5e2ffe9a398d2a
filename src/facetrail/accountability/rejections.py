"""Thumbnails of the photographs an enrolment job rejected, so that the admin following the job sees which photograph
each reason is about (a rejected photograph is stored nowhere else).

A thumbnail is small (THUMBNAIL_SIDE pixels on its longest side), kept encrypted like every other piece of biometric
data (``DATA/jobs/<job id>.rejected/``, each bound to the context ``rejected:<job id>:<sha256 of the upload>``), at
most MAX_PER_JOB per job, and only as long as the job: it is deleted with the job's snapshot. Keeping one, viewing
one and deleting a job's are audited. Only those who may enrol (admins, who manage every gallery) keep and view
them, and only the rejected photographs of a job, never an enrolled one.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
from pathlib import Path

from PIL import Image

from facetrail.accountability.context import Context
from facetrail.accountability.users import Actor
from facetrail.crypto import KeyRing
from facetrail.datadir import DataDir
from facetrail.engine.decode import decode_image
from facetrail.errors import ImageError, NotFoundError
from facetrail.storage import BlobStore

THUMBNAIL_SIDE = 160
"""Longest side, in pixels, of a rejected photograph's thumbnail."""
MAX_PER_JOB = 500
"""Thumbnails kept for one job at most; the rejections after them are listed without one."""
_KEY = re.compile(r"[0-9a-f]{64}")


def thumbnail_stores(datadir: DataDir, keyring: KeyRing) -> list[BlobStore]:
    """The thumbnail store of every job that has one (for key rotation)."""
    return [_store(folder, keyring) for folder in sorted(datadir.jobs_dir.glob("*.rejected")) if folder.is_dir()]


def _store(folder: Path, keyring: KeyRing) -> BlobStore:
    return BlobStore(folder, keyring, f"rejected:{folder.name.removesuffix('.rejected')}")


class RejectedPhotos:
    """Keeping, showing and deleting the thumbnails of a job's rejected photographs."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def keep(self, by: Actor, gallery: str, job_id: int, data: bytes) -> str | None:
        """Keep a thumbnail of a photograph enrolment job ``job_id`` rejected (admins; audited); its key (the upload's
        SHA-256), or None when the bytes are no image facetrail reads or the job holds MAX_PER_JOB already."""
        context = self.context
        context.require(by, "enrol", gallery)
        store = self._job_store(job_id)
        if len(store.keys()) >= MAX_PER_JOB:
            return None
        try:
            image = Image.fromarray(decode_image(data, context.settings.engine.limits).pixels)
        except ImageError:
            return None
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        encoded = io.BytesIO()
        image.save(encoded, format="JPEG", quality=85)
        key = hashlib.sha256(data).hexdigest()
        store.put(key, encoded.getvalue())
        context.audit.append(by.username, "rejected_photo_kept", gallery, {"job": job_id, "sha256": key})
        return key

    def view(self, by: Actor, gallery: str, job_id: int, key: str) -> bytes:
        """The JPEG thumbnail ``key`` of job ``job_id``'s rejected photograph, for ``gallery`` (admins; the view is
        audited). NotFoundError when the job keeps no such thumbnail."""
        context = self.context
        context.require(by, "enrol", gallery)
        context.galleries.get(gallery)  # NotFoundError for a gallery that no longer exists
        try:
            if not _KEY.fullmatch(key):
                raise FileNotFoundError(key)
            thumbnail = self._job_store(job_id).get(key)
        except FileNotFoundError:
            raise NotFoundError(f"enrolment job {job_id} keeps no such rejected photograph") from None
        context.audit.append(by.username, "rejected_photo_viewed", gallery, {"job": job_id, "sha256": key})
        return thumbnail

    def forget(self, by: Actor, gallery: str, job_id: int) -> int:
        """Delete every thumbnail of job ``job_id`` (when the job itself is forgotten; audited); how many there were."""
        context = self.context
        context.require(by, "enrol", gallery)
        store = self._job_store(job_id)
        count = len(store.keys())
        shutil.rmtree(store.root, ignore_errors=True)
        if count:
            context.audit.append(by.username, "rejected_photos_deleted", gallery, {"job": job_id, "thumbnails": count})
        return count

    def _job_store(self, job_id: int) -> BlobStore:
        return _store(self.context.galleries.datadir.jobs_dir / f"{job_id}.rejected", self.context.galleries.keyring)
