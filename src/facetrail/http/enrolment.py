"""Enrolling uploaded photographs, for the API's enrolment routes and the web's enrolment jobs alike: the uploads
read into memory (never written to disk in plaintext) and matched to their manifest rows, then enrolled through the
service in this process."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from fastapi import UploadFile

from facetrail.accountability.service import Actor, Facetrail
from facetrail.engine.scheduling import Workforce
from facetrail.gallery.enrol import EnrolItem, EnrolOutcome, EnrolSummary
from facetrail.gallery.manifest import items_from_uploads
from facetrail.http.files import read_upload, upload_name


def manifest_files(images: list[UploadFile], manifest: str, source: str | None) -> list[EnrolItem]:
    """The uploaded photographs as enrolment items held in memory, each by its row in the manifest CSV
    (``items_from_uploads``)."""
    uploads = [(upload_name(upload, f"image-{number}"), read_upload(upload)) for number, upload in enumerate(images, start=1)]
    return items_from_uploads(manifest, uploads, source)


def enrol_uploads(system: Facetrail, actor: Actor, gallery: str, items: list[EnrolItem],
                  on_outcome: Callable[[EnrolOutcome], None] = lambda outcome: None,
                  on_workforce: Callable[[Workforce], None] = lambda workforce: None) -> tuple[EnrolSummary, list[EnrolOutcome]]:
    """Enrol uploaded photographs (items holding their bytes, never written to disk) through the service, in this
    process with a face engine of its own (or on the Ray cluster of ``enrolment.ray_address``), so searches go on
    meanwhile; the summary and each item's outcome, in order. ``on_outcome`` hears of each outcome as it is known,
    ``on_workforce`` of the Ray nodes and workers working (on a cluster)."""
    rules = system.admin.enrolment_rules(actor)
    if not rules.ray_address:  # on Ray the actors do the face work; otherwise it stays in this process
        rules = dataclasses.replace(rules, workers=1)
    summary = system.admin.enrol(actor, gallery, items, rules, on_outcome, on_workforce=on_workforce)
    outcome_of = {id(outcome.item): outcome for outcome in summary.outcomes}
    return summary, [outcome_of[id(item)] for item in items]
