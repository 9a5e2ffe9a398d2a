"""Accuracy evaluation on labelled photo sets (admins and auditors)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from facetrail.cli.common import DataOption, JsonOption, acting, emit_json, out, progress
from facetrail.errors import FacetrailError

evaluate_app = typer.Typer(no_args_is_help=True, help="Measure accuracy on labelled photo sets.")


FaceChoiceOption = Annotated[str, typer.Option("--face-choice", help="Which face of a photo with several: centre (nearest the image centre) or largest.")]
GroupsOption = Annotated[Optional[Path], typer.Option("--groups", help="CSV with columns identity, group: report every metric per group too.")]
WorkersOption = Annotated[int, typer.Option("--workers", help="Worker processes (0 = one per core).")]
AugmentationOption = Annotated[Optional[str], typer.Option(help="Override embedding.augmentation: none, mirror or mirror+context.")]


def _evaluation_config(system, actor, augmentation: str | None):
    from facetrail.accountability.users import require
    from facetrail.engine.pipeline import EMBEDDING_PASSES

    require(actor, "evaluate")
    config = system.galleries.settings.engine
    if augmentation:
        if augmentation not in EMBEDDING_PASSES:
            raise FacetrailError(f"--augmentation must be one of: {', '.join(EMBEDDING_PASSES)}")
        config = dataclasses.replace(config, embedding=dataclasses.replace(config.embedding, augmentation=augmentation))
    return config


def _templates_with_progress(paths, config, face_choice, workers):
    from facetrail.evaluation.templates import compute_templates

    if face_choice not in ("centre", "largest"):
        raise FacetrailError("--face-choice must be 'centre' or 'largest'")
    paths = list(dict.fromkeys(paths))
    with progress() as bar:
        task = bar.add_task("computing templates", total=len(paths))
        return compute_templates(paths, config, face_choice, workers, on_done=lambda t: bar.advance(task))


def _pipeline_description(config, face_choice: str) -> dict:
    from facetrail.engine.models import DlibResNetModel
    from facetrail.engine.pipeline import EMBEDDING_PASSES

    return {
        "model": DlibResNetModel.name,
        "backend": config.embedding.backend,
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
    augmentation: AugmentationOption = None,
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

    def body(system, actor):
        config = _evaluation_config(system, actor, augmentation)
        pair_list = read_pairs(pairs, images)
        labels = read_groups(groups) if groups else None
        templates = _templates_with_progress([p for pair in pair_list for p in (pair.first, pair.second)], config, face_choice, workers)
        report = {"pipeline": _pipeline_description(config, face_choice), **verification_report(pair_list, templates, DlibResNetModel.default_threshold, labels, folds)}
        if plot:
            plot_verification(roc_curves(pair_list, templates, labels), plot, title=f"Verification on {pairs.name}")
            report["plot"] = str(plot)
        if save_calibration:
            distances, same, failed = pair_distances(pair_list, templates)
            report["calibration"] = str(store_calibration(system.datadir, distances[~same & ~failed], DlibResNetModel.name))
            system.audit.append(actor.username, "calibration_saved", DlibResNetModel.name, {"impostor_pairs": int((~same & ~failed).sum())})
        return report

    report = acting(data, body)
    if as_json:
        emit_json(report)
    else:
        _print_verification(report)


def _print_verification(report: dict) -> None:
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
    augmentation: AugmentationOption = None,
    candidates: Annotated[int, typer.Option("--candidates", help="Candidate list length.")] = 20,
    workers: WorkersOption = 0,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Identification rates at ranks 1/5/20 (CMC), FNIR at FPIR 0.01/0.001 and failures to enrol."""
    from facetrail.evaluation.datasets import identity_folders, images_under, read_groups
    from facetrail.evaluation.identification import cmc_curves, identification_report, split_identities
    from facetrail.evaluation.plots import plot_cmc

    def body(system, actor):
        config = _evaluation_config(system, actor, augmentation)
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

    report = acting(data, body)
    if as_json:
        emit_json(report)
        return
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


def register(app: typer.Typer) -> None:
    app.add_typer(evaluate_app, name="evaluate")
