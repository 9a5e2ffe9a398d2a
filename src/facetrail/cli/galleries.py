"""Galleries: create, list, show, grant, expunge, likely duplicates; enrolment; inspecting a photograph."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from facetrail.cli.common import DataOption, JsonOption, acting, console, emit_json, out, print_table, progress, whole
from facetrail.errors import FacetrailError
from facetrail.gallery.duplicates import HOW_TO_RESOLVE, MAX_PAIRS
from facetrail.gallery.manifest import manifest_summary

gallery_app = typer.Typer(no_args_is_help=True, help="Create, list, inspect galleries, grant units access, list likely duplicates, expunge subjects.")


@gallery_app.command("create")
def gallery_create(
    name: str,
    allowed_source: Annotated[list[str], typer.Option("--allowed-source", help="A provenance source this gallery accepts (repeatable), e.g. booking.")],
    description: Annotated[str, typer.Option(help="What the gallery holds and under which authority.")] = "",
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a gallery that accepts images only from the given sources (admin)."""
    info = acting(data, lambda system, actor: system.admin.create_gallery(actor, name, allowed_source, description))
    if as_json:
        emit_json(info.to_dict())
    else:
        console.print(f"created gallery {info.name!r} accepting: {', '.join(info.allowed_sources)}")


@gallery_app.command("list")
def gallery_list(data: DataOption = None, as_json: JsonOption = False) -> None:
    """List galleries with their counts."""
    infos = acting(data, lambda system, actor: system.admin.galleries(actor))
    if as_json:
        emit_json([i.to_dict() for i in infos])
        return
    table = Table("name", "allowed sources", "subjects", "images", "version")
    for i in infos:
        table.add_row(i.name, ", ".join(i.allowed_sources), str(i.subjects), str(i.images), str(i.version))
    print_table(table)


@gallery_app.command("show")
def gallery_show(name: str, data: DataOption = None, as_json: JsonOption = False) -> None:
    """Show one gallery's description, sources, counts and which units may search it."""

    info = acting(data, lambda system, actor: system.admin.gallery_details(actor, name))
    if as_json:
        emit_json(info)
        return
    info["calibration"] = (f"{info['calibration']['source']} (calibration {info['calibration']['calibration_id']})"
                           if info["calibration"] else "none: estimated false-match rates are not shown")
    for key, value in info.items():
        out.print(f"{key:>18}: {', '.join(value) if isinstance(value, list) else value}", highlight=False)


@gallery_app.command("grant")
def gallery_grant(name: str, unit: Annotated[str, typer.Option("--unit", help="Unit whose investigators may search it ('*' for all).")], data: DataOption = None) -> None:
    """Authorize a unit's investigators to search a gallery (admin)."""
    acting(data, lambda system, actor: system.admin.grant_gallery(actor, name, unit))
    console.print(f"unit {unit!r} may search {name!r}")


@gallery_app.command("revoke")
def gallery_revoke(name: str, unit: Annotated[str, typer.Option("--unit")], data: DataOption = None) -> None:
    """Withdraw a unit's authorization to search a gallery (admin)."""
    acting(data, lambda system, actor: system.admin.revoke_gallery(actor, name, unit))
    console.print(f"unit {unit!r} may no longer search {name!r}")


@gallery_app.command("duplicates")
def gallery_duplicates(
    name: str,
    max_distance: Annotated[Optional[float], typer.Option("--max-distance", help="List pairs at most this far apart, above 0 and below 2 (default: calibration.duplicate_distance).")] = None,
    limit: Annotated[int, typer.Option("--limit", help=f"List at most this many pairs, closest first (1 to {MAX_PAIRS:,}).")] = 1000,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """List pairs of photographs of different subjects so close that they are likely one person under two ids
    (aliases, re-bookings), closest first, for the agency to resolve (admin; audited)."""
    found = acting(data, lambda system, actor: system.admin.duplicates(actor, name, max_distance, limit))
    if as_json:
        emit_json(found.to_dict())
        return
    table = Table(whole("subject"), whole("image"), whole("other subject"), whole("other image"), whole("distance"))
    for pair in found.pairs:
        table.add_row(pair.subject_id, str(pair.image_id), pair.other_subject_id, str(pair.other_image_id), f"{pair.distance:.4f}")
    print_table(table)
    console.print(f"{len(found.pairs)} pair(s) at most {found.max_distance} apart among the {found.templates} templates of "
                  f"{name!r} (version {found.version})"
                  f"{'; more are that close: lower --max-distance or raise --limit' if found.more else ''}. {HOW_TO_RESOLVE}",
                  highlight=False, markup=False)


@gallery_app.command("remove-subject")
def gallery_remove_subject(name: str, subject_id: str, data: DataOption = None, as_json: JsonOption = False) -> None:
    """Expunge a subject: images, templates, stored photographs and index entries (admin)."""
    report = acting(data, lambda system, actor: system.admin.remove_subject(actor, name, subject_id))
    if as_json:
        emit_json(report.to_dict())
    else:
        console.print(
            f"expunged subject {report.subject_id!r} from {report.gallery!r}: {report.images} image(s), "
            f"{report.templates} template(s), {report.image_files} stored photograph(s), {report.index_entries} index entr(y/ies)"
        )


@gallery_app.command("calibrate")
def gallery_calibrate(
    name: str,
    pairs: Annotated[Optional[int], typer.Option("--pairs", help="Impostor pairs to sample (default: calibration.pairs, 100,000,000, which resolves 1e-7).")] = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Calibrate estimated false-match rates from the gallery's own subjects, one photograph each: pairs of different
    people closer than calibration.duplicate_distance are left out (see 'gallery duplicates'); its searches use it
    from then on (admin)."""

    def body(system, actor):
        with progress() as bar:
            bar.add_task(f"comparing pairs of subjects of {name}", total=None)
            return system.calibrations.calibrate_gallery(actor, name, pairs)

    summary = acting(data, body)
    if as_json:
        emit_json(summary)
        return
    console.print(f"calibration {summary['calibration_id']} of gallery {name!r} in force: {summary['source']}; resolves "
                  f"false-match rates down to 1 in {summary['impostor_pairs']:,}"
                  f"{', with a fitted tail below' if summary['tail_fitted'] else ''} ({summary['seconds']} s)", highlight=False)


def enroll(
    path: Annotated[Optional[Path], typer.Argument(help="Folder with one subfolder per subject; with --manifest, the folder manifest paths are relative to.")] = None,
    gallery: Annotated[str, typer.Option("--gallery", help="Gallery to enrol into.")] = ...,
    source: Annotated[Optional[str], typer.Option("--source", help="Provenance source of the images (default for manifest rows without one).")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help=f"CSV with the columns {manifest_summary()}.")] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write every item's outcome and reason to this CSV.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes, or Ray actors with --ray (default: enrolment.workers, 0 = one per core).")] = None,
    ray: Annotated[Optional[str], typer.Option("--ray", metavar="ADDRESS", help="Run the face work as Ray actors on this cluster: 'auto', 'local', host:port or ray://host:port (default: enrolment.ray_address; needs the ray extra).")] = None,
    retry_rejected: Annotated[bool, typer.Option("--retry-rejected", help="Analyse again images rejected by an earlier run.")] = False,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Enrol photographs into a gallery (admin): idempotent by content hash, resumable, every rejection reported."""
    from facetrail.gallery.enrol import items_from_folder, write_report
    from facetrail.gallery.manifest import items_from_manifest

    def body(system, actor):
        if manifest is not None:
            items = items_from_manifest(manifest, source, base=path)
        elif path is not None and source:
            items = items_from_folder(path, source)
        else:
            raise FacetrailError("give a folder and --source, or --manifest")
        rules = system.admin.enrolment_rules(actor)
        if workers is not None:
            rules = dataclasses.replace(rules, workers=workers)
        if ray is not None:
            rules = dataclasses.replace(rules, ray_address=ray)
        with progress() as bar:
            task = bar.add_task(f"enrolling into {gallery}", total=len(items))
            summary = system.admin.enrol(
                actor, gallery, items, rules, on_outcome=lambda outcome: bar.advance(task), retry_rejected=retry_rejected,
                on_workforce=lambda workforce: bar.update(task, description=f"enrolling into {gallery} on {workforce.describe()}"))
        if report is not None:
            write_report(report, summary.outcomes)
        return summary

    summary = acting(data, body)
    counts = summary.to_dict()
    if as_json:
        emit_json({**counts, "rejections": [o.to_row() for o in summary.outcomes if o.status in ("rejected", "previously-rejected")]})
        return
    precision = counts.pop("precision")
    console.print(", ".join(f"{v} {k}" for k, v in counts.items())
                  + (f" (templates computed in {' and '.join(precision)})" if precision else ""))
    for outcome in summary.outcomes:
        if outcome.status == "rejected":
            console.print(f"  rejected {outcome.item.path}: {outcome.reason}", highlight=False, markup=False)


def inspect(
    image: Path,
    face_box: Annotated[Optional[str], typer.Option("--face-box", help="x,y,w,h of the face, drawn by hand.")] = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the faces found in an image with their quality (investigators; audited; no search is run)."""
    from facetrail.engine.decode import read_image_bytes

    def body(system, actor):
        return system.searches.inspect_faces(actor, read_image_bytes(image, system.searches.inspection_limits), face_box)

    decoded, faces = acting(data, body)
    rows = [
        {"face": n, "box": f.detection.box.as_list(), "detector": f.detection.detector, "score": f.detection.score, "quality": f.quality.to_dict()}
        for n, f in enumerate(faces, start=1)
    ]
    if as_json:
        emit_json({"image": str(image), "format": decoded.format, "width": decoded.pixels.shape[1], "height": decoded.pixels.shape[0], "faces": rows})
        return
    console.print(f"{image}: {decoded.format} {decoded.pixels.shape[1]}×{decoded.pixels.shape[0]}, {len(faces)} face(s)")
    for row in rows:
        q = row["quality"]
        console.print(f"  face {row['face']}: box {row['box']} ({row['detector']}), {q['verdict']}" + (f": {'; '.join(q['reasons'])}" if q["reasons"] else ""), highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(gallery_app, name="gallery")
    app.command()(enroll)
    app.command()(inspect)
