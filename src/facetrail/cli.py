"""The ``facetrail`` command line.

Every command names its data directory with ``--data`` (or ``FACETRAIL_DATA``).
User errors print one line naming the problem and exit with status 2; nothing
is half-written. There is deliberately no search command here until searching
is bound to users, cases and an audit trail.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from facetrail.datadir import DATA_ENV, DataDir
from facetrail.errors import FacetrailError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help="Accountable face search: ranked investigative leads from authorized galleries.")
gallery_app = typer.Typer(no_args_is_help=True, help="Create, list, inspect galleries and expunge subjects.")
evaluate_app = typer.Typer(no_args_is_help=True, help="Measure accuracy on labelled photo sets.")
app.add_typer(gallery_app, name="gallery")
app.add_typer(evaluate_app, name="evaluate")

console = Console(stderr=True, soft_wrap=True)
DataOption = Annotated[Optional[Path], typer.Option("--data", envvar=DATA_ENV, help="Data directory [default: ./facetrail-data]")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on standard output.")]


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(2)


def _run(action: Callable[[], Any]) -> Any:
    """Run a command body, turning facetrail's user errors into a one-line message and exit status 2."""
    try:
        return action()
    except FacetrailError as exc:
        _fail(str(exc).replace("[", r"\["))


def _json_ready(value: Any) -> Any:
    """Strict JSON: non-finite numbers (an unreachable threshold is -inf) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(_json_ready(data), indent=2, default=str, allow_nan=False) + "\n")


def _galleries(data: Path | None):
    from facetrail.gallery.gallery import Galleries

    return Galleries.open(DataDir.locate(data))


@app.command()
def init(data: DataOption = None) -> None:
    """Create (or upgrade) a data directory: folders, config.toml and the store's schema."""
    from facetrail.gallery.gallery import Galleries

    def body() -> None:
        datadir = DataDir.locate(data)
        Galleries.initialise(datadir).close()
        console.print(f"data directory ready: {datadir.root}")

    _run(body)


# --- galleries ------------------------------------------------------------------------


@gallery_app.command("create")
def gallery_create(
    name: str,
    allowed_source: Annotated[list[str], typer.Option("--allowed-source", help="A provenance source this gallery accepts (repeatable), e.g. booking.")],
    description: Annotated[str, typer.Option(help="What the gallery holds and under which authority.")] = "",
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a gallery that accepts images only from the given sources."""
    info = _run(lambda: _galleries(data).create(name, allowed_source, description))
    if as_json:
        _emit_json(info.to_dict())
    else:
        console.print(f"created gallery {info.name!r} accepting: {', '.join(info.allowed_sources)}")


@gallery_app.command("list")
def gallery_list(data: DataOption = None, as_json: JsonOption = False) -> None:
    """List galleries with their counts."""
    infos = _run(lambda: _galleries(data).list())
    if as_json:
        _emit_json([i.to_dict() for i in infos])
        return
    table = Table("name", "allowed sources", "subjects", "images", "version")
    for i in infos:
        table.add_row(i.name, ", ".join(i.allowed_sources), str(i.subjects), str(i.images), str(i.version))
    Console().print(table)


@gallery_app.command("show")
def gallery_show(name: str, data: DataOption = None, as_json: JsonOption = False) -> None:
    """Show one gallery's description, sources and counts."""
    info = _run(lambda: _galleries(data).get(name).info())
    if as_json:
        _emit_json(info.to_dict())
        return
    for key, value in info.to_dict().items():
        Console().print(f"{key:>16}: {', '.join(value) if isinstance(value, list) else value}", highlight=False)


@gallery_app.command("remove-subject")
def gallery_remove_subject(name: str, subject_id: str, data: DataOption = None, as_json: JsonOption = False) -> None:
    """Expunge a subject: images, templates, stored photographs and index entries."""
    report = _run(lambda: _galleries(data).get(name).remove_subject(subject_id))
    if as_json:
        _emit_json(report.to_dict())
    else:
        console.print(
            f"expunged subject {report.subject_id!r} from {report.gallery!r}: {report.images} image(s), "
            f"{report.templates} template(s), {report.image_files} stored photograph(s), {report.index_entries} index entr(y/ies)"
        )


# --- enrolment --------------------------------------------------------------------------


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console, transient=True)


@app.command()
def enroll(
    path: Annotated[Optional[Path], typer.Argument(help="Folder with one subfolder per subject; with --manifest, the folder manifest paths are relative to.")] = None,
    gallery: Annotated[str, typer.Option("--gallery", help="Gallery to enrol into.")] = ...,
    source: Annotated[Optional[str], typer.Option("--source", help="Provenance source of the images (default for manifest rows without one).")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="CSV: subject_id, path, [source], [capture_date], other columns kept as metadata.")] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write every item's outcome and reason to this CSV.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default: enrolment.workers, 0 = one per core).")] = None,
    retry_rejected: Annotated[bool, typer.Option("--retry-rejected", help="Analyse again images rejected by an earlier run.")] = False,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Enrol photographs into a gallery: idempotent by content hash, resumable, every rejection reported."""
    import dataclasses

    from facetrail.gallery.enrol import enrol as run_enrolment
    from facetrail.gallery.enrol import items_from_folder, items_from_manifest, write_report

    def body():
        galleries = _galleries(data)
        target = galleries.get(gallery)
        if manifest is not None:
            items = items_from_manifest(manifest, source, base=path)
        elif path is not None and source:
            items = items_from_folder(path, source)
        else:
            raise FacetrailError("give a folder and --source, or --manifest")
        if source and source not in target.info().allowed_sources:
            raise FacetrailError(f"source {source!r} is not allowed for gallery {gallery!r} (allowed: {', '.join(target.info().allowed_sources)})")
        rules = galleries.settings.enrolment
        if workers is not None:
            rules = dataclasses.replace(rules, workers=workers)
        with _progress() as progress:
            task = progress.add_task(f"enrolling into {gallery}", total=len(items))
            summary = run_enrolment(
                target, items, galleries.settings.engine, rules,
                on_outcome=lambda outcome: progress.advance(task), retry_rejected=retry_rejected,
            )
        if report is not None:
            write_report(report, summary.outcomes)
        return summary

    summary = _run(body)
    counts = summary.to_dict()
    if as_json:
        _emit_json({**counts, "rejections": [o.to_row() for o in summary.outcomes if o.status in ("rejected", "previously-rejected")]})
        return
    console.print(", ".join(f"{v} {k}" for k, v in counts.items()))
    for outcome in summary.outcomes:
        if outcome.status == "rejected":
            console.print(f"  rejected {outcome.item.path}: {outcome.reason}", highlight=False, markup=False)


@app.command()
def inspect(
    image: Path,
    face_box: Annotated[Optional[str], typer.Option("--face-box", help="x,y,w,h of the face, drawn by hand.")] = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the faces found in an image with their quality (no search is run)."""
    from facetrail.engine.decode import read_image_bytes
    from facetrail.engine.geometry import Box
    from facetrail.engine.pipeline import FaceEngine

    def body():
        datadir = DataDir.locate(data)
        settings = datadir.settings() if datadir.exists() else None
        engine = FaceEngine(settings.engine if settings else None)
        decoded = engine.decode(read_image_bytes(image, engine.config.limits))
        faces = engine.find_faces(decoded.pixels, Box.parse(face_box) if face_box else None)
        return decoded, faces

    decoded, faces = _run(body)
    rows = [
        {"face": n, "box": f.detection.box.as_list(), "detector": f.detection.detector, "score": f.detection.score, "quality": f.quality.to_dict()}
        for n, f in enumerate(faces, start=1)
    ]
    if as_json:
        _emit_json({"image": str(image), "format": decoded.format, "width": decoded.pixels.shape[1], "height": decoded.pixels.shape[0], "faces": rows})
        return
    console.print(f"{image}: {decoded.format} {decoded.pixels.shape[1]}×{decoded.pixels.shape[0]}, {len(faces)} face(s)")
    for row in rows:
        q = row["quality"]
        console.print(f"  face {row['face']}: box {row['box']} ({row['detector']}), {q['verdict']}" + (f": {'; '.join(q['reasons'])}" if q["reasons"] else ""), highlight=False, markup=False)


# --- evaluation -------------------------------------------------------------------------


FaceChoiceOption = Annotated[str, typer.Option("--face-choice", help="Which face of a photo with several: centre (nearest the image centre) or largest.")]
GroupsOption = Annotated[Optional[Path], typer.Option("--groups", help="CSV with columns identity, group: report every metric per group too.")]
WorkersOption = Annotated[int, typer.Option("--workers", help="Worker processes (0 = one per core).")]


def _evaluation_engine(data: Path | None, augmentation: str | None):
    import dataclasses

    from facetrail.config import EngineConfig
    from facetrail.engine.pipeline import EMBEDDING_PASSES

    datadir = DataDir.locate(data)
    config = datadir.settings().engine if datadir.exists() else EngineConfig()
    if augmentation:
        if augmentation not in EMBEDDING_PASSES:
            raise FacetrailError(f"--augmentation must be one of: {', '.join(EMBEDDING_PASSES)}")
        config = dataclasses.replace(config, embedding=dataclasses.replace(config.embedding, augmentation=augmentation))
    return datadir, config


def _templates_with_progress(paths, config, face_choice, workers):
    from facetrail.evaluation.templates import compute_templates

    if face_choice not in ("centre", "largest"):
        raise FacetrailError("--face-choice must be 'centre' or 'largest'")
    paths = list(dict.fromkeys(paths))
    with _progress() as progress:
        task = progress.add_task("computing templates", total=len(paths))
        return compute_templates(paths, config, face_choice, workers, on_done=lambda t: progress.advance(task))


def _pipeline_description(config, face_choice: str) -> dict:
    from facetrail.engine.models import DlibResNetModel
    from facetrail.engine.pipeline import EMBEDDING_PASSES

    return {
        "model": DlibResNetModel.name,
        "augmentation": config.embedding.augmentation,
        "embedding_passes_per_face": EMBEDDING_PASSES[config.embedding.augmentation],
        "detection_fallback": config.detection.fallback,
        "face_choice": face_choice,
    }


@evaluate_app.command("verify")
def evaluate_verify(
    pairs: Annotated[Path, typer.Option("--pairs", help="LFW-format pairs file.")],
    images: Annotated[Path, typer.Option("--images", help="Folder with Name/Name_0001.jpg images.")],
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write ROC and DET curves to this PNG/SVG/PDF.")] = None,
    groups: GroupsOption = None,
    face_choice: FaceChoiceOption = "centre",
    augmentation: Annotated[Optional[str], typer.Option(help="Override embedding.augmentation: none, mirror or mirror+context.")] = None,
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 10,
    save_calibration: Annotated[bool, typer.Option("--save-calibration", help="Save the impostor score → false-match-rate table into the data directory.")] = False,
    workers: WorkersOption = 0,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verification accuracy (10-fold), ROC AUC, TAR at FAR 1e-2/1e-3, EER and failures to enrol on a pairs file."""
    from facetrail.engine.models import DlibResNetModel
    from facetrail.evaluation.calibration import save_calibration as store_calibration
    from facetrail.evaluation.datasets import read_groups, read_pairs
    from facetrail.evaluation.plots import plot_verification
    from facetrail.evaluation.verification import pair_distances, roc_curves, verification_report

    def body():
        datadir, config = _evaluation_engine(data, augmentation)
        pair_list = read_pairs(pairs, images)
        labels = read_groups(groups) if groups else None
        templates = _templates_with_progress([p for pair in pair_list for p in (pair.first, pair.second)], config, face_choice, workers)
        report = {"pipeline": _pipeline_description(config, face_choice), **verification_report(pair_list, templates, DlibResNetModel.default_threshold, labels, folds)}
        if plot:
            plot_verification(roc_curves(pair_list, templates, labels), plot, title=f"Verification on {pairs.name}")
            report["plot"] = str(plot)
        if save_calibration:
            distances, same, failed = pair_distances(pair_list, templates)
            report["calibration"] = str(store_calibration(datadir, distances[~same & ~failed], DlibResNetModel.name))
        return report

    report = _run(body)
    if as_json:
        _emit_json(report)
    else:
        _print_verification(report)


def _print_verification(report: dict) -> None:
    out = Console()
    k = report["accuracy_kfold"]
    out.print(f"pairs: {report['pairs']} ({report['genuine_pairs']} same, {report['impostor_pairs']} different), failed pairs: {report['failed_pairs']}")
    out.print(f"failures to enrol: {report['enrolment']['failures_to_enrol']} of {report['enrolment']['images']} images")
    out.print(f"accuracy ({k['folds']}-fold): {k['mean']:.4f} ± {k['std']:.4f}")
    d = report["accuracy_at_default_threshold"]
    out.print(f"accuracy at threshold {d['threshold']}: {d['accuracy']:.4f}  (FNMR {d['fnmr']:.4f}, FMR {d['fmr']:.4f})")
    if "roc_auc" in report:
        out.print(f"ROC AUC: {report['roc_auc']:.5f}   EER: {report['eer']['eer']:.4f}")
        for far, point in report["tar_at_far"].items():
            note = "" if point["resolvable"] else f"  (only {report['impostor_pairs']} impostor pairs: not resolvable)"
            out.print(f"TAR at FAR {far}: {point['tar']:.4f} (threshold {point['threshold']:.3f}){note}")
    for name, c in report.get("groups", {}).get("worst_to_best", {}).items():
        out.print(f"{name}: worst {c['worst_group']} {c['worst']:.4f} / best {c['best_group']} {c['best']:.4f} = ×{c['ratio']:.2f}")


@evaluate_app.command("identify")
def evaluate_identify(
    images: Annotated[Path, typer.Option("--images", help="Folder with one subfolder of images per identity.")],
    distractors: Annotated[Optional[Path], typer.Option("--distractors", help="Folder of images of other people, enrolled to enlarge the gallery.")] = None,
    gallery_per_subject: Annotated[int, typer.Option("--gallery-per-subject", help="Images per identity enrolled in the gallery.")] = 1,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the CMC curve to this PNG/SVG/PDF.")] = None,
    groups: GroupsOption = None,
    face_choice: FaceChoiceOption = "centre",
    augmentation: Annotated[Optional[str], typer.Option(help="Override embedding.augmentation: none, mirror or mirror+context.")] = None,
    candidates: Annotated[int, typer.Option("--candidates", help="Candidate list length.")] = 20,
    workers: WorkersOption = 0,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Identification rates at ranks 1/5/20 (CMC), FNIR at FPIR 0.01/0.001 and failures to enrol."""
    from facetrail.evaluation.datasets import identity_folders, images_under, read_groups
    from facetrail.evaluation.identification import cmc_curves, identification_report, split_identities
    from facetrail.evaluation.plots import plot_cmc

    def body():
        _, config = _evaluation_engine(data, augmentation)
        if gallery_per_subject < 1 or candidates < 1:
            raise FacetrailError("--gallery-per-subject and --candidates must be at least 1")
        split = split_identities(identity_folders(images), gallery_per_subject, images_under(distractors) if distractors else None)
        labels = read_groups(groups) if groups else None
        paths = [p for v in split.gallery.values() for p in v] + [p for _, p in split.mated + split.unmated]
        templates = _templates_with_progress(paths, config, face_choice, workers)
        report = {"pipeline": _pipeline_description(config, face_choice), **identification_report(split, templates, labels, candidates)}
        if plot:
            plot_cmc(cmc_curves(split, templates, labels, candidates), plot, title=f"Identification on {images.name}")
            report["plot"] = str(plot)
        return report

    report = _run(body)
    if as_json:
        _emit_json(report)
        return
    out = Console()
    out.print(f"gallery: {report['gallery_subjects']} subjects ({report['gallery_images']} images); probes: {report['mated_probes']} mated, {report['unmated_probes']} unmated")
    out.print(f"unmated probes: {report['unmated_rule']}")
    e = report["enrolment"]
    out.print(f"failures to enrol: gallery {e['gallery']['failures_to_enrol']}, probes {e['probes']['failures_to_enrol']}")
    for rank, rate in report.get("cmc", {}).items():
        out.print(f"identification rate at {rank.replace('_', ' ')}: {rate:.4f}")
    for fpir, point in report.get("fnir_at_fpir", {}).items():
        note = "" if point["resolvable"] else "  (too few unmated probes to resolve)"
        out.print(f"FNIR at FPIR {fpir}: {point['fnir']:.4f} (threshold {point['threshold']:.3f}){note}")
    for name, c in report.get("groups", {}).get("worst_to_best", {}).items():
        out.print(f"{name}: worst {c['worst_group']} {c['worst']:.4f} / best {c['best_group']} {c['best']:.4f} = ×{c['ratio']:.2f}")
