"""Lead reports: a self-contained HTML file for a search whose candidate two examiners verified independently.

It carries the notice once, times in the configured zone (``reports.time_zone``), the probe and each lead
candidate framed on their faces at one scale side by side, the estimated false-match rate in the words every
interface uses, and each examiner's decision with their structured comparison (feature by feature, conclusion, notes).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from typing import Any

from PIL import Image
from sqlalchemy import select

from facetrail.accountability.comparison import CONCLUSIONS, FEATURES, FINDINGS
from facetrail.accountability.outcomes import candidate_status
from facetrail.accountability.schema import ProbeRecord, ResolutionRecord, ReviewRecord
from facetrail.accountability.context import Context, candidate_figures, user_names
from facetrail.evaluation.published import model_limits_sentence
from facetrail.accountability.users import Actor
from facetrail.config import local_time
from facetrail.engine.framing import FACE_FRAME_SIDE, face_frame, face_frame_box
from facetrail.errors import FacetrailError
from facetrail.gallery.schema import ImageRecord, TemplateRecord

LEAD_NOTICE = (
    "This report records an investigative lead produced by face recognition and verified by two examiners. "
    "It is not an identification and not probable cause: the lead must be corroborated by independent evidence "
    "before any action is taken against the person."
)

LEAD_READERS = ("the lead report of a search is for its investigator, the supervisors of its unit and the examiners "
                "who reviewed it once no candidate of it is left for them to decide (blind review)")
"""Why a lead report is refused to someone who may look at the search itself."""

STYLE = (
    "body{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
    ".notice{border:3px solid #b00;padding:1rem;font-weight:bold}.pair{display:flex;gap:1rem;flex-wrap:wrap}"
    f"figure{{margin:0;max-width:{FACE_FRAME_SIDE}px}}img{{width:100%;height:auto;border:1px solid #888}}"
    "table{border-collapse:collapse;margin:1rem 0;max-width:100%}td,th{border:1px solid #888;padding:.3rem .6rem;text-align:left}"
    "td,figcaption{overflow-wrap:anywhere}.scroll{overflow-x:auto}"
)


def lead_report_filename(search_id: int) -> str:
    """The name a lead report is downloaded under."""
    return f"lead-report-search-{search_id}.html"


def export_lead(context: Context, actor: Actor, search_id: int) -> str:
    """The lead report for ``search_id`` as HTML (audited); refused (audited) to anyone but LEAD_READERS, whatever the
    search's outcome, then unless the search has a verified lead."""
    context.require(actor, "export_lead", f"search:{search_id}")
    zone = context.settings.reports.zone()

    def when(moment: dt.datetime) -> str:
        return html.escape(local_time(moment, zone))

    with context.galleries.sessions() as session:
        search = context.viewable_search(session, actor, search_id)
        reviewed = session.scalar(select(ReviewRecord.id).where(ReviewRecord.search_id == search_id,
                                                                ReviewRecord.examiner_id == actor.id))
        reader = search.user_id == actor.id or context.oversees(actor, search) or reviewed is not None
        if not reader or context.open_reviews(session, actor, [search_id]):
            context.deny(actor, "export_lead", f"search:{search_id}", LEAD_READERS)
        if context.search_outcome(session, search_id) != "lead":
            raise FacetrailError(f"search {search_id} has no verified lead (two examiners must independently mark a candidate 'possible lead')")
        names = user_names(session)
        probe = session.get(ProbeRecord, search.probe_id)
        probe_picture = (_framed(context, context.probes.get(probe.sha256), search.face_box, "the probe, framed on the searched face")
                         if probe is not None and probe.stored else "<p>(probe image purged under the retention policy)</p>")
        gallery = context.galleries.get(search.gallery_name)
        tables = context.recorded_calibration(session, search)
        sections, ranks = [], []
        for candidate in search.candidates:
            reviews = list(session.scalars(select(ReviewRecord).where(ReviewRecord.candidate_id == candidate.id)
                                           .order_by(ReviewRecord.decided_at)))
            resolution = session.scalar(select(ResolutionRecord).where(ResolutionRecord.candidate_id == candidate.id))
            if candidate_status(reviews, resolution, context.examiners_required()) != "lead":
                continue
            ranks.append(candidate.rank)
            image = session.get(ImageRecord, candidate.image_id) if candidate.image_id else None
            if image is None:
                photo = "<p>(photograph since expunged from the gallery)</p>"
            else:
                box = session.scalar(select(TemplateRecord.face_box).where(TemplateRecord.image_id == image.id))
                photo = _framed(context, gallery.blobs.get(image.content_hash), box, f"candidate {candidate.rank}, framed on the face")
            figures = candidate_figures(tables, candidate.distance, candidate.false_match_rate, search.gallery_subjects)
            fmr = figures["false_match_rate_text"] + (f" (calibration: {tables.source})" if tables else "")
            look_alikes = f"<p class='look-alikes'>{html.escape(figures['look_alikes']['sentence'])}</p>" if figures["look_alikes"] else ""
            decisions = [(names.get(r.examiner_id, "?"), r.decision, r.decided_at, r.notes, r.comparison) for r in reviews]
            sections.append(
                f"<section><h2>Candidate rank {candidate.rank}: subject {html.escape(candidate.subject_external_id)}</h2>"
                f"<div class='pair'><figure>{probe_picture}<figcaption>Probe (SHA-256 {html.escape(probe.sha256 if probe else '')})"
                f"</figcaption></figure><figure>{photo}<figcaption>Gallery image {candidate.image_id}</figcaption></figure></div>"
                f"<p>Both photographs are framed on the face at one scale: the face box is {face_frame_box()[2]} "
                "pixels wide in each.</p>"
                f"<p>Distance {candidate.distance:.4f} (lower is more alike); estimated false-match rate at this distance: "
                f"{html.escape(fmr)}.</p>" + look_alikes
                + _decisions_table(decisions, (names.get(resolution.supervisor_id, "?"), resolution) if resolution else None, when)
                + _comparisons_table(decisions) + "</section>"
            )
        facts = [
            ("Search", str(search.id)), ("Case number", search.case_number), ("Purpose", search.purpose), ("Offence", search.offence),
            ("Authorization reference", search.authorization_ref or "—"), ("Investigator", names.get(search.user_id, "?")),
            ("Searched at", local_time(search.started_at, zone)), ("Gallery", f"{search.gallery_name} (version {search.gallery_version}"
                                                    + (f", {search.gallery_subjects:,} people then)" if search.gallery_subjects else ")")),
            ("Policy version", str(search.policy_version)), ("Model", search.model_name),
        ]
    limits = model_limits_sentence(context.datadir, search.model_name)
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'><title>Lead report — search "
        f"{search_id}</title><style>{STYLE}</style></head><body>"
        f"<h1>Investigative lead — case {html.escape(search.case_number)}</h1>"
        f"<p class='notice' role='note'>{html.escape(LEAD_NOTICE)}</p>"
        "<table><caption>Search</caption><tbody>"
        + "".join(f"<tr><th scope='row'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
        + "</tbody></table>" + "".join(sections)
        + (f"<h2>The model's limits</h2><p class='limits'>{html.escape(limits)}</p>" if limits else "")
        + f"<p>Report made {when(dt.datetime.now(dt.timezone.utc))} for {html.escape(actor.username)}.</p></body></html>"
    )
    context.audit.append(actor.username, "lead_exported", f"search:{search_id}",
                        {"ranks": ranks, "case_number": search.case_number})
    return page


def _decisions_table(decisions: list[tuple], resolution: tuple[str, Any] | None, when) -> str:
    """Each examiner's decision, conclusion, time and notes, and a supervisor's ruling where there is one."""
    rows = "".join(
        f"<tr><td>{html.escape(examiner)}</td><td>{html.escape(decision.replace('_', ' '))}</td>"
        f"<td>{html.escape(CONCLUSIONS[comparison['conclusion']][0]) if comparison else 'no structured comparison recorded'}</td>"
        f"<td>{when(decided_at)}</td><td>{html.escape(notes)}</td></tr>"
        for examiner, decision, decided_at, notes, comparison in decisions
    )
    if resolution:
        supervisor, ruling = resolution
        rows += (f"<tr><td>{html.escape(supervisor)} (supervisor)</td><td>{html.escape(ruling.decision.replace('_', ' '))}</td>"
                 f"<td>—</td><td>{when(ruling.decided_at)}</td><td>{html.escape(ruling.notes)}</td></tr>")
    return ("<div class='scroll'><table><caption>Examiners' decisions</caption><thead><tr><th scope='col'>Examiner</th>"
            "<th scope='col'>Decision</th><th scope='col'>Conclusion</th><th scope='col'>When</th><th scope='col'>Notes</th>"
            f"</tr></thead><tbody>{rows}</tbody></table></div>")


def _comparisons_table(decisions: list[tuple]) -> str:
    """The examiners' structured comparisons side by side: one row per feature, one column per examiner."""
    compared = [(examiner, comparison) for examiner, *_, comparison in decisions if comparison]
    without = [examiner for examiner, *_, comparison in decisions if not comparison]
    missing = "".join(f"<p>{html.escape(examiner)} recorded the decision without a structured comparison.</p>" for examiner in without)
    if not compared:
        return missing
    head = "".join(f"<th scope='col'>{html.escape(examiner)}</th>" for examiner, _ in compared)
    rows = "".join(
        f"<tr><th scope='row'>{html.escape(name)}</th>"
        + "".join(f"<td>{html.escape(FINDINGS.get(comparison['features'].get(key, ''), 'not recorded'))}</td>" for _, comparison in compared)
        + "</tr>"
        for key, name in FEATURES.items()
    )
    conclusions = "".join(f"<td>{html.escape(CONCLUSIONS[comparison['conclusion']][0])}</td>" for _, comparison in compared)
    return (f"<div class='scroll'><table><caption>Structured comparisons, feature by feature</caption><thead><tr>"
            f"<th scope='col'>Feature</th>{head}</tr></thead><tbody>{rows}<tr><th scope='row'>Conclusion</th>{conclusions}</tr>"
            f"</tbody></table></div>{missing}")


def _framed(context: Context, data: bytes, box: list[int] | None, description: str) -> str:
    """An inline JPEG <img> of a photograph framed on its face box (``engine.framing``), or reduced whole without one."""
    pixels = context.pixels(data)
    if box:
        pixels = face_frame(pixels, box)
    image = Image.fromarray(pixels)
    image.thumbnail((FACE_FRAME_SIDE, FACE_FRAME_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img src='data:image/jpeg;base64,{encoded}' alt='{html.escape(description, quote=True)}'>"
