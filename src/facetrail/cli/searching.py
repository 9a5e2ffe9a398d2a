"""Searching and reviewing: search, compare, the review queue, decisions, disputes, lead export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from facetrail.cli.common import (DataOption, JsonOption, acting, console, emit_json, fail, out, print_table,
                                  readable_time, whole)
from facetrail.accountability.comparison import CONCLUSIONS, FEATURES, FINDINGS
from facetrail.accountability.service import CaseRequest
from facetrail.errors import FacetrailError, NoFaceError, RefusedError, SeveralFacesError

review_app = typer.Typer(no_args_is_help=True, help="Examiners' two-person review of candidate lists.")
lead_app = typer.Typer(no_args_is_help=True, help="Lead reports.")

CaseOption = Annotated[str, typer.Option("--case", help="Case number (format set by the policy).")]
PurposeOption = Annotated[str, typer.Option("--purpose", help="A permitted purpose from the policy, e.g. criminal_investigation.")]
OffenceOption = Annotated[str, typer.Option("--offence", help="Offence category from the policy, e.g. robbery.")]
AuthOption = Annotated[str, typer.Option("--authorization", help="Authorization reference, where the policy requires one.")]
NoteOption = Annotated[str, typer.Option("--note", help="Why this search is needed.")]
FACE_OPTION_HINTS = {NoFaceError: " (--face-box x,y,w,h)", SeveralFacesError: "; use --face N"}
"""The option that settles a search refused for want of a face, added to the refusal's message."""


def _read_probe(path: Path, system) -> bytes:
    from facetrail.engine.decode import read_image_bytes

    return read_image_bytes(path, system.searches.limits)


def _print_candidates(candidates: list[dict], notice: str) -> None:
    table = Table("candidate", "subject", "image", "distance", "est. false-match rate", "look-alikes by chance",
                  title="Candidate list (investigative leads)")
    for c in candidates:
        if c.get("withheld"):  # blind to the algorithm until this examiner decides on the candidate (--candidate LABEL)
            table.add_row(c["label"], *["withheld"] * 5)
            continue
        name = f"{c['label']} (rank {c['rank']})" if c.get("label") else f"rank {c['rank']}"
        look_alikes = c.get("look_alikes")
        table.add_row(name, c["subject_id"], str(c["image_id"]), f"{c['distance']:.4f}", c["false_match_rate_text"],
                      look_alikes["count_text"] if look_alikes else "not estimated")
    out.print(table)
    first = next((c for c in candidates if c.get("look_alikes")), None)
    if first:
        out.print("look-alikes by chance: how many different people of the gallery would be expected to come as close "
                  f"as the candidate. {first.get('label') or 'Rank ' + str(first['rank'])}: {first['look_alikes']['sentence']}",
                  markup=False)
    out.print(f"[bold]{notice}[/]")


def search(
    probe: Path,
    gallery: Annotated[str, typer.Option("--gallery", help="Gallery to search (your unit must be authorized).")],
    case: CaseOption,
    purpose: PurposeOption,
    offence: OffenceOption,
    authorization: AuthOption = "",
    note: NoteOption = "",
    face_box: Annotated[Optional[str], typer.Option("--face-box", help="x,y,w,h of the face, drawn by hand.")] = None,
    face: Annotated[Optional[int], typer.Option("--face", help="Which face (1 = largest) when the probe shows several.")] = None,
    override_token: Annotated[Optional[str], typer.Option("--override-token", envvar="FACETRAIL_OVERRIDE_TOKEN", help="A supervisor's token approving a poor-quality probe.")] = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search a gallery with a probe photograph, for a case, a permitted purpose and an offence (investigator)."""

    def body(system, actor):
        override = system.auth.authenticate(override_token) if override_token else None
        request = CaseRequest(case, purpose, offence, authorization, note, gallery, face_box, face)
        try:
            return system.searches.search(actor, _read_probe(probe, system), request, override)
        except RefusedError as exc:
            hint = FACE_OPTION_HINTS.get(type(exc.__cause__))
            if hint is None:
                raise
            raise RefusedError(f"{exc}{hint}") from exc.__cause__

    result = acting(data, body)
    if as_json:
        emit_json(result.to_dict())
        return
    console.print(f"search {result.search_id}: gallery {result.gallery} v{result.gallery_version}, policy v{result.policy_version}, "
                  f"case {result.case_number}; probe face {result.face_box} ({result.quality['verdict']})")
    _print_candidates([c.__dict__ for c in result.candidates], result.notice)


def compare(
    first: Path, second: Path, case: CaseOption, purpose: PurposeOption, offence: OffenceOption,
    authorization: AuthOption = "", note: NoteOption = "", data: DataOption = None, as_json: JsonOption = False,
) -> None:
    """Compare two photographs (1:1) under the same rules as a search (investigator)."""
    request = CaseRequest(case, purpose, offence, authorization, note)
    result = acting(data, lambda system, actor: system.searches.compare(actor, _read_probe(first, system),
                                                                        _read_probe(second, system), request))
    if as_json:
        emit_json(result.to_dict())
        return
    out.print(f"comparison {result.search_id}: distance {result.distance:.4f} (lower is more alike); "
              f"estimated false-match rate {result.false_match_rate_text}")
    out.print(f"[bold]{result.notice}[/]")


@review_app.command("queue")
def review_queue(data: DataOption = None, as_json: JsonOption = False) -> None:
    """Searches waiting for your review (examiner)."""
    queue = acting(data, lambda system, actor: system.reviews.review_queue(actor))
    if as_json:
        emit_json(queue)
        return
    table = Table(whole("search"), whole("case"), "gallery", "purpose", "offence", whole("candidates"),
                  whole("searched at"))
    for item in queue:
        table.add_row(str(item["search_id"]), item["case_number"], item["gallery"], item["purpose"], item["offence"],
                      str(item["candidates"]), readable_time(item["started_at"]))
    print_table(table)


@review_app.command("show")
def review_show(search_id: int, data: DataOption = None, as_json: JsonOption = False) -> None:
    """A search's candidate list; examiners see only their own decisions (blind review)."""
    shown = acting(data, lambda system, actor: system.reviews.show_search(actor, search_id))
    if as_json:
        emit_json(shown)
        return
    console.print(f"search {shown['search_id']}: case {shown['case_number']}, {shown['purpose']}, {shown['offence']}; "
                  f"gallery {shown['gallery']} v{shown['gallery_version']}" + (f"; outcome: {shown['outcome']}" if shown["outcome"] else ""))
    _print_candidates(shown["candidates"], shown["notice"])
    for c in shown["candidates"]:
        for d in c["decisions"]:
            out.print(f"  rank {c['rank']}: {d['examiner']} — {d['decision']} {d['notes']}", highlight=False)


CandidateOption = Annotated[str | None, typer.Option("--candidate", help=(
    "The candidate's label as `review show` names it to an examiner blind to the algorithm (A, B1, ...)."))]


def _rank_of(system, actor, search_id: int, rank: int | None, label: str | None) -> int | None:
    """The rank of the candidate given by ``rank`` or by its blind ``label`` (a view of the search, audited)."""
    if label is None:
        return rank
    found = [c["rank"] for c in system.reviews.show_search(actor, search_id)["candidates"] if c["label"] == label.strip().upper()]
    if not found:
        raise FacetrailError(f"search {search_id} has no candidate labelled {label[:8]!r} for you (see review show)")
    return found[0]


@review_app.command("image")
def review_image(
    search_id: int,
    rank: Annotated[int | None, typer.Option("--rank", help="Candidate rank; without it (or --candidate), the probe.")] = None,
    candidate: CandidateOption = None,
    output: Annotated[Path, typer.Option("--out", help="Where to write the image.")] = ...,
    data: DataOption = None,
) -> None:
    """Write the probe or a candidate's gallery photograph to a file for side-by-side comparison (audited)."""
    def photograph(system, actor) -> bytes:
        chosen = _rank_of(system, actor, search_id, rank, candidate)
        return system.reviews.candidate_photo(actor, search_id, chosen)[0] if chosen else system.reviews.probe_photo(actor, search_id)[0]

    image = acting(data, photograph)
    output.write_bytes(image)
    console.print(f"wrote {output}")


@review_app.command("decide")
def review_decide(
    search_id: int,
    decision: Annotated[str, typer.Option("--decision", help="possible_lead, not_a_match or inconclusive.")],
    rank: Annotated[int | None, typer.Option("--rank", help="Candidate rank (or --candidate).")] = None,
    candidate: CandidateOption = None,
    notes: Annotated[str, typer.Option("--notes", help="What the decision rests on.")] = "",
    conclusion: Annotated[str, typer.Option("--conclusion", help=(
        "Your conclusion on the scale: " + ", ".join(CONCLUSIONS) + " (it must agree with --decision)."))] = "",
    feature: Annotated[list[str] | None, typer.Option("--feature", help=(
        "FEATURE=FINDING, repeatable: features " + ", ".join(FEATURES) + "; findings " + ", ".join(FINDINGS) + "."))] = None,
    data: DataOption = None,
) -> None:
    """Record your decision on one candidate (examiner; final; blind to other examiners), with your structured
    comparison when you give a --conclusion."""
    findings = dict(item.partition("=")[::2] for item in feature or [])
    if findings and not conclusion:
        raise typer.BadParameter("--feature needs --conclusion (the structured comparison ends in a conclusion)")
    comparison = {"features": findings, "conclusion": conclusion} if conclusion else None
    if (rank is None) == (candidate is None):
        raise typer.BadParameter("give the candidate's --rank or its --candidate label (one of them)")
    acting(data, lambda system, actor: system.reviews.decide(
        actor, search_id, _rank_of(system, actor, search_id, rank, candidate), decision, notes, comparison))
    console.print(f"recorded: search {search_id}, candidate {candidate or rank}: {decision}")


@review_app.command("disputes")
def review_disputes(data: DataOption = None, as_json: JsonOption = False) -> None:
    """Candidates on which examiners disagree (supervisor)."""
    disputes = acting(data, lambda system, actor: system.reviews.disputes(actor))
    if as_json:
        emit_json(disputes)
        return
    for d in disputes:
        out.print(f"search {d['search_id']} rank {d['rank']} ({d['subject_id']}), case {d['case_number']}: "
                  + "; ".join(f"{x['decision']}" for x in d["decisions"]), highlight=False)


@review_app.command("resolve")
def review_resolve(
    search_id: int,
    rank: Annotated[int, typer.Option("--rank")],
    decision: Annotated[str, typer.Option("--decision", help="possible_lead, not_a_match or inconclusive.")],
    notes: Annotated[str, typer.Option("--notes")] = "",
    data: DataOption = None,
) -> None:
    """Settle examiners' disagreement on a candidate (supervisor who neither ran nor reviewed the search)."""
    outcome = acting(data, lambda system, actor: system.reviews.resolve(actor, search_id, rank, decision, notes))
    console.print(f"search {search_id}: {outcome}")


@lead_app.command("export")
def lead_export(
    search_id: int,
    output: Annotated[Path, typer.Option("--out", help="HTML file to write.")],
    data: DataOption = None,
) -> None:
    """Write the lead report of a search with a verified lead (audited)."""
    page = acting(data, lambda system, actor: system.reviews.lead_report(actor, search_id))
    try:
        output.write_text(page, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc}")
    console.print(f"wrote {output}")


def register(app: typer.Typer) -> None:
    app.command()(search)
    app.command()(compare)
    app.add_typer(review_app, name="review")
    app.add_typer(lead_app, name="lead")
