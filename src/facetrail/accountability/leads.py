"""Lead reports: a self-contained HTML page for a search whose candidate two examiners verified independently."""

from __future__ import annotations

import base64
import html
import io

from PIL import Image
from sqlalchemy import select

from facetrail.accountability.outcomes import candidate_status
from facetrail.accountability.schema import ProbeRecord, ResolutionRecord, ReviewRecord
from facetrail.accountability.context import NOTICE, Context, user_names
from facetrail.accountability.users import Actor
from facetrail.engine.decode import decode_image
from facetrail.errors import FacetrailError
from facetrail.gallery.schema import ImageRecord

LEAD_NOTICE = (
    "This report records an investigative lead produced by face recognition and verified by two examiners. "
    "It is not an identification and not probable cause: the lead must be corroborated by independent evidence "
    "before any action is taken against the person."
)
THUMBNAIL_PX = 480


def export_lead(context: Context, actor: Actor, search_id: int) -> str:
    """The lead report for ``search_id`` as HTML (audited); refused unless the search has a verified lead."""
    context.check(actor, "export_lead")
    with context.galleries.sessions() as session:
        search = context.viewable_search(session, actor, search_id)
        if context.search_outcome(session, search_id) != "lead":
            raise FacetrailError(f"search {search_id} has no verified lead (two examiners must independently mark a candidate 'possible lead')")
        names = user_names(session)
        probe = session.get(ProbeRecord, search.probe_id)
        leads = []
        for candidate in search.candidates:
            reviews = list(session.scalars(select(ReviewRecord).where(ReviewRecord.candidate_id == candidate.id)))
            resolution = session.scalar(select(ResolutionRecord).where(ResolutionRecord.candidate_id == candidate.id))
            if candidate_status(reviews, resolution, context.examiners_required()) == "lead":
                image = session.get(ImageRecord, candidate.image_id) if candidate.image_id else None
                leads.append((candidate, reviews, resolution, image.content_hash if image else None))
        gallery = context.galleries.get(search.gallery_name)
        probe_data = context.probes.get(probe.sha256) if probe is not None and probe.stored else None
        sections = []
        calibration = html.escape(context.calibration_source(search.model_name) or "")
        for candidate, reviews, resolution, content_hash in leads:
            photo = _thumbnail(gallery.blobs.get(content_hash), context) if content_hash else "<p>(photograph since expunged)</p>"
            decisions = "".join(
                f"<tr><td>{html.escape(names.get(r.examiner_id, '?'))}</td><td>{html.escape(r.decision.replace('_', ' '))}</td>"
                f"<td>{html.escape(r.decided_at.isoformat())}</td><td>{html.escape(r.notes)}</td></tr>"
                for r in reviews
            )
            if resolution is not None:
                decisions += (f"<tr><td>{html.escape(names.get(resolution.supervisor_id, '?'))} (supervisor)</td>"
                              f"<td>{html.escape(resolution.decision.replace('_', ' '))}</td>"
                              f"<td>{html.escape(resolution.decided_at.isoformat())}</td><td>{html.escape(resolution.notes)}</td></tr>")
            fmr = "not calibrated" if candidate.false_match_rate is None else f"{candidate.false_match_rate:.2e}"
            if candidate.false_match_rate is not None and calibration:
                fmr += f" (calibration: {calibration})"
            sections.append(
                f"<section><h2>Candidate rank {candidate.rank}: subject {html.escape(candidate.subject_external_id)}</h2>"
                f"<div class='pair'><figure>{_thumbnail(probe_data, context) if probe_data else '<p>(probe image purged under the retention policy)</p>'}"
                f"<figcaption>Probe (SHA-256 {html.escape(probe.sha256 if probe else '')})</figcaption></figure>"
                f"<figure>{photo}<figcaption>Gallery image {candidate.image_id}</figcaption></figure></div>"
                f"<p>Distance {candidate.distance:.4f} (lower is more alike); estimated false-match rate at this distance: {fmr}.</p>"
                f"<table><caption>Examiners' decisions</caption><thead><tr><th scope='col'>Examiner</th><th scope='col'>Decision</th>"
                f"<th scope='col'>When (UTC)</th><th scope='col'>Notes</th></tr></thead><tbody>{decisions}</tbody></table></section>"
            )
        facts = [
            ("Search", str(search.id)), ("Case number", search.case_number), ("Purpose", search.purpose), ("Offence", search.offence),
            ("Authorization reference", search.authorization_ref or "—"), ("Investigator", names.get(search.user_id, "?")),
            ("Searched at (UTC)", search.started_at.isoformat()), ("Gallery", f"{search.gallery_name} (version {search.gallery_version})"),
            ("Policy version", str(search.policy_version)), ("Model", search.model_name),
        ]
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Lead report — search "
        f"{search_id}</title><style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}"
        ".notice{border:3px solid #b00;padding:1rem;font-weight:bold}.pair{display:flex;gap:1rem;flex-wrap:wrap}"
        "figure{margin:0}img{max-width:100%;height:auto;border:1px solid #888}table{border-collapse:collapse}"
        "td,th{border:1px solid #888;padding:.3rem .6rem;text-align:left}</style></head><body>"
        f"<h1>Investigative lead — case {html.escape(search.case_number)}</h1>"
        f"<p class='notice' role='note'>{html.escape(LEAD_NOTICE)}</p><p>{html.escape(NOTICE)}</p>"
        "<table><caption>Search</caption><tbody>"
        + "".join(f"<tr><th scope='row'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
        + "</tbody></table>" + "".join(sections) + "</body></html>"
    )
    context.audit.append(actor.username, "lead_exported", f"search:{search_id}",
                        {"ranks": [c.rank for c, *_ in leads], "case_number": search.case_number})
    return page


def _thumbnail(data: bytes, context: Context) -> str:
    """An inline JPEG <img> of a photograph, reduced to a readable size."""
    pixels = decode_image(data, context.settings.limits).pixels
    image = Image.fromarray(pixels)
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img src='data:image/jpeg;base64,{encoded}' alt='face photograph'>"
