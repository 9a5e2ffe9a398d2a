"""Data key rotation: a new active key, every piece of biometric data re-encrypted with it, the old keys retired."""

from __future__ import annotations

from dataclasses import dataclass

from facetrail.accountability.rejections import thumbnail_stores
from facetrail.gallery.gallery import Galleries
from facetrail.storage import probe_store
from facetrail.store import erase_deleted_rows


@dataclass(frozen=True)
class RotationReport:
    """What a data key rotation re-encrypted and how many old keys it retired."""

    templates: int
    image_files: int
    index_files: int
    probe_files: int
    retired_keys: int
    rejected_thumbnails: int = 0
    """Thumbnails of photographs enrolment jobs rejected (``facetrail.accountability.rejections``)."""


def rotate_data_key(galleries: Galleries) -> RotationReport:
    """Make a new active data key, re-encrypt all biometric data with it, then retire the previous keys.

    Templates, gallery photographs and index files are redone gallery by gallery under each gallery's write
    lock, then probe images and the thumbnails of enrolment jobs' rejected photographs. The old keys are retired
    only once everything is re-encrypted, so an interrupted rotation loses nothing and running it again completes
    it.
    """
    keyring = galleries.keyring
    previous = keyring.key_ids()
    keyring.add_key()
    templates = image_files = index_files = 0
    for info in galleries.list():
        gallery_templates, gallery_files = galleries.get(info.name).reencrypt()
        templates += gallery_templates
        image_files += gallery_files
        index_files += 1
    probes = probe_store(galleries.datadir, keyring)
    probe_files = sum(probes.reencrypt(key) for key in sorted(probes.keys()))
    thumbnails = sum(store.reencrypt(key) for store in thumbnail_stores(galleries.datadir, keyring)
                     for key in sorted(store.keys()))
    erase_deleted_rows(galleries.engine)  # the old ciphertexts of re-encrypted templates
    for old in previous:
        keyring.retire(old)
    return RotationReport(templates, image_files, index_files, probe_files, len(previous), thumbnails)
