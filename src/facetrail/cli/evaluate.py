"""Accuracy evaluation on labelled photo sets (admins and auditors)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from facetrail.cli.common import DataOption, JsonOption, acting, emit_json, json_ready, out, progress
from facetrail.errors import FacetrailError

evaluate_app = typer.Typer(no_args_is_help=True, help="Measure accuracy on labelled photo sets.")


FaceChoiceOption = Annotated[str, typer.Option("--face-choice", help="Which face of a photo with several: centre (nearest the image centre) or largest.")]
GroupsOption = Annotated[Optional[Path], typer.Option("--groups", help="CSV with columns identity, group: report every metric per group too.")]
WorkersOption = Annotated[int, typer.Option("--workers", help="Worker processes (0 = one per core).")]
AugmentationOption = Annotated[Optional[str], typer.Option(help="Override embedding.augmentation: none, mirror or mirror+context.")]
CacheOption = Annotated[Optional[Path], typer.Option("--template-cache", help="Keep templates in this .npz file and reuse them on the next run (same pipeline only).")]


def _evaluation_config(system, actor, augmentation: str | None):
    from facetrail.engine.pipeline import EMBEDDING_PASSES

    config = system.admin.evaluation_engine(actor)
    if augmentation:
        if augmentation not in EMBEDDING_PASSES:
            raise FacetrailError(f"--augmentation must be one of: {', '.join(EMBEDDING_PASSES)}")
        config = dataclasses.replace(config, embedding=dataclasses.replace(config.embedding, augmentation=augmentation))
    return config


def _templates_with_progress(paths, config, face_choice, workers, cache_file: Path | None = None):
    from facetrail.engine.models import DlibResNetModel
    from facetrail.evaluation.templates import TemplateCache, compute_templates, pipeline_key

    if face_choice not in ("centre", "largest"):
        raise FacetrailError("--face-choice must be 'centre' or 'largest'")
    cache = None
    if cache_file:
        cache = TemplateCache(cache_file, pipeline_key(config, DlibResNetModel.name, DlibResNetModel.version, face_choice))
    paths = list(dict.fromkeys(paths))
    with progress() as bar:
        task = bar.add_task("computing templates", total=len(paths))
        return compute_templates(paths, config, face_choice, workers, on_done=lambda t: bar.advance(task), cache=cache)


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
    template_cache: CacheOption = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verification accuracy (10-fold), ROC AUC, TAR at FAR 1e-2/1e-3, EER and failures to enrol on a pairs file."""
    from facetrail.engine.models import DlibResNetModel
    from facetrail.evaluation.datasets import read_groups, read_pairs
    from facetrail.evaluation.plots import plot_verification
    from facetrail.evaluation.verification import pair_distances, roc_curves, verification_report

    def body(system, actor):
        config = _evaluation_config(system, actor, augmentation)
        pair_list = read_pairs(pairs, images)
        labels = read_groups(groups) if groups else None
        templates = _templates_with_progress([p for pair in pair_list for p in (pair.first, pair.second)], config, face_choice, workers, template_cache)
        report = {"pipeline": _pipeline_description(config, face_choice), **verification_report(pair_list, templates, DlibResNetModel.default_threshold, labels, folds)}
        if plot:
            plot_verification(roc_curves(pair_list, templates, labels), plot, title=f"Verification on {pairs.name}")
            report["plot"] = str(plot)
        if save_calibration:
            distances, same, failed = pair_distances(pair_list, templates)
            usable = ~same & ~failed
            source = f"{pairs.name}: {int(usable.sum()):,} impostor pairs"
            report["calibration"] = system.calibrations.save_calibration(actor, DlibResNetModel.name, distances[usable], source)
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
    template_cache: CacheOption = None,
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
        templates = _templates_with_progress(paths, config, face_choice, workers, template_cache)
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


def _check_operating_point(threshold: float | None, fmr: float) -> None:
    if threshold is not None and not 0 < threshold < 10:
        raise FacetrailError("--threshold must be a distance between 0 and 10")
    if not 0 < fmr < 1:
        raise FacetrailError("--fmr must be between 0 and 1")


@evaluate_app.command("demographics")
def evaluate_demographics(
    images: Annotated[Path, typer.Option("--images", help="Folder with one subfolder of images per identity.")],
    groups: Annotated[Path, typer.Option("--groups", help="CSV with columns identity, group.")],
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Operating threshold (distance) for every group.")] = None,
    fmr: Annotated[float, typer.Option("--fmr", help="Without --threshold: set it where the FMR over all impostor pairs is this.")] = 1e-3,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write ROC and DET curves per group to this PNG/SVG/PDF.")] = None,
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples of the identities for the confidence intervals.")] = 1000,
    face_choice: FaceChoiceOption = "centre",
    augmentation: AugmentationOption = None,
    save_calibration: Annotated[bool, typer.Option("--save-calibration", help="Save the false-match-rate table from all impostor pairs into the data directory.")] = False,
    publish: Annotated[bool, typer.Option("--publish", help="Show these figures on the auditors' report page.")] = False,
    workers: WorkersOption = 0,
    template_cache: CacheOption = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """FNMR and FMR per group at one threshold over all genuine and impostor pairs, worst/best ratios with confidence
    intervals, and FNIR (rank 1) and FPIR per group."""
    import numpy as np

    from facetrail.engine.models import DlibResNetModel
    from facetrail.evaluation.datasets import identity_folders, read_groups
    from facetrail.evaluation.demographics import demographic_report
    from facetrail.evaluation.plots import plot_verification

    def body(system, actor):
        config = _evaluation_config(system, actor, augmentation)
        _check_operating_point(threshold, fmr)
        if not 10 <= resamples <= 100_000:
            raise FacetrailError("--resamples must be between 10 and 100000")
        people, labels = identity_folders(images), read_groups(groups)
        labelled = [p for name, paths in people.items() if name in labels for p in paths]
        if not labelled:
            raise FacetrailError(f"{groups}: none of its identities has a folder in {images}")
        templates = _templates_with_progress(labelled, config, face_choice, workers, template_cache)
        with progress() as bar:
            bar.add_task("comparing every pair", total=None)
            figures, curves, impostors = demographic_report(people, labels, templates, threshold, fmr, resamples)
        report = {"pipeline": _pipeline_description(config, face_choice), "images_folder": str(images), **figures}
        if plot:
            groups_at = figures["verification"]["by_group"]
            marks = {name: (g["fmr"]["rate"], g["fnmr"]["rate"]) for name, g in groups_at.items()}
            plot_verification(curves, plot, title=f"Per group on {images.name}, threshold {figures['threshold']['value']:.3f}", operating_points=marks)
            report["plot"] = str(plot)
        if save_calibration:
            compared = int(np.isfinite(impostors).sum())
            source = f"{images.name}: {compared:,} impostor pairs among {figures['images']:,} photographs of {figures['identities']:,} people"
            report["calibration"] = system.calibrations.save_calibration(actor, DlibResNetModel.name, impostors, source)
        if publish:
            report["published"] = str(system.admin.publish_evaluation(actor, DlibResNetModel.name, json_ready(report), images.name))
        return report

    report = acting(data, body)
    if as_json:
        emit_json(report)
        return
    _print_demographics(report)


def _print_demographics(report: dict) -> None:
    def rate(figure: dict) -> str:
        if figure["rate"] is None:
            return "no comparisons"
        interval = "(95% CI {:.2e} to {:.2e}) ".format(*figure["ci95_bootstrap"]) if figure["ci95_bootstrap"] else ""
        return f"{figure['rate']:.2e} {interval}{figure['errors']:,} of {figure['trials']:,}"

    out.print(f"{report['identities']:,} identities, {report['images']:,} images ({report['unlabelled_identities_left_out']} unlabelled identities left out); "
              f"failures to enrol: {report['enrolment']['failures_to_enrol']}")
    out.print(f"threshold {report['threshold']['value']:.4f} ({report['threshold']['rule']}); 95% intervals: bootstrap over identities")
    v = report["verification"]
    for name, g in v["by_group"].items():
        out.print(f"{name}: FNMR {rate(g['fnmr'])}   FMR {rate(g['fmr'])}")
    for name, c in v["cross_group"].items():
        out.print(f"{name}: FMR {rate(c['fmr'])}")
    for name, g in report["identification"]["by_group"].items():
        out.print(f"{name}: FNIR (rank 1) {rate(g['fnir_rank_1'])}   FPIR {rate(g['fpir'])}")
    for section in (v, report["identification"]):
        for name, c in section["worst_to_best"].items():
            interval = "(95% CI {:.2f} to {:.2f})".format(*c["ratio_ci95_bootstrap"]) if c["ratio_ci95_bootstrap"] else ""
            out.print(f"{name}: worst {c['worst_group']} / best {c['best_group']} = ×{c['ratio']:.2f} {interval}")


@evaluate_app.command("quality")
def evaluate_quality(
    pairs: Annotated[Path, typer.Option("--pairs", help="LFW-format pairs file (its same-person pairs are used).")],
    images: Annotated[Path, typer.Option("--images", help="Folder with Name/Name_0001.jpg images.")],
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="The fixed threshold (distance).")] = None,
    fmr: Annotated[float, typer.Option("--fmr", help="Without --threshold: fix it where the FMR over all impostor pairs among the pairs' images is this.")] = 1e-3,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the EDC curves to this PNG/SVG/PDF.")] = None,
    face_choice: FaceChoiceOption = "centre",
    augmentation: AugmentationOption = None,
    workers: WorkersOption = 0,
    template_cache: CacheOption = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Error-versus-Discard Characteristic per quality component: does refusing low-quality photographs remove errors?"""
    from facetrail.evaluation.datasets import read_pairs
    from facetrail.evaluation.edc import pairs_edc_report
    from facetrail.evaluation.plots import plot_edc

    def body(system, actor):
        config = _evaluation_config(system, actor, augmentation)
        _check_operating_point(threshold, fmr)
        pair_list = read_pairs(pairs, images)
        templates = _templates_with_progress([p for pair in pair_list for p in (pair.first, pair.second)], config, face_choice, workers, template_cache)
        try:
            figures, curves, fractions = pairs_edc_report(pair_list, templates, threshold, fmr)
        except ValueError as exc:
            raise FacetrailError(f"{pairs}: {exc}") from None
        report = {"pipeline": _pipeline_description(config, face_choice), **figures}
        if plot:
            plot_edc(curves, fractions, plot, title=f"Error versus discard on {pairs.name} (threshold {figures['threshold']:.3f})")
            report["plot"] = str(plot)
        return report

    report = acting(data, body)
    if as_json:
        emit_json(report)
        return
    out.print(f"{report['genuine_pairs']} genuine pairs; threshold {report['threshold']:.4f} ({report['threshold_rule']}); FNMR {report['fnmr_before_discarding']:.4f}")
    for name, c in report["components"].items():
        verdict = "predicts errors" if c["predicts_errors"] else "does not predict errors"
        out.print(f"{name:15} area ratio {c['area_ratio']:.3f} ({verdict}); suggested threshold {c['suggested_threshold']}")


def register(app: typer.Typer) -> None:
    app.add_typer(evaluate_app, name="evaluate")
