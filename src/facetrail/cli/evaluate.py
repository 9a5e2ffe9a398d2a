"""Accuracy evaluation on labelled photo sets (admins and auditors).

Why one module: it is the ``evaluate`` command group; each command's options, checks and text output sit together,
and the commands share the helpers at the top (templates with their cache, the pipeline's description, the score
normalization)."""

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
NormalizationOption = Annotated[Optional[str], typer.Option("--normalization", help="Score normalization: none, or fsn (fair score normalization cross-fitted on the people of --images); default: embedding.score_normalization.")]
MaxPhotosOption = Annotated[int, typer.Option("--max-photos-per-person", help="The verification figures again with at most this many photographs of each person (a seeded choice).")]


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


def _normalization_choice(option: str | None, config) -> str:
    """``--normalization``, else the configured one; refused unless known."""
    choice = option or config.embedding.score_normalization
    if choice not in ("none", "fsn"):
        raise FacetrailError("--normalization must be 'none' or 'fsn'")
    return choice


def _normalization(choice: str, identities, templates, fmr: float, clusters: int | None = None) -> tuple[dict | None, dict | None]:
    """Per-image offsets of the chosen score normalization (None: none), and what it was."""
    from facetrail.evaluation.normalization import CLUSTERS, FSN_METHOD, cross_fitted_offsets

    if choice == "none":
        return None, None
    clusters = clusters or CLUSTERS
    with progress() as bar:
        bar.add_task("fitting the score normalization", total=None)
        try:
            offsets = cross_fitted_offsets(identities, templates, fmr, clusters)
        except ValueError as exc:
            raise FacetrailError(f"score normalization: {exc}") from None
    return offsets, {"method": FSN_METHOD, "clusters": clusters, "fmr": fmr, "images_normalized": len(offsets)}


def _published(system, actor, report: dict, images: Path) -> str:
    """Keep ``report`` as this installation's published figures of its kind (audited); the file written."""
    from facetrail.engine.models import DlibResNetModel

    return str(system.admin.publish_evaluation(actor, DlibResNetModel.name, json_ready(report), images.name))


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
    normalization: NormalizationOption = None,
    workers: WorkersOption = 0,
    template_cache: CacheOption = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verification accuracy (10-fold), ROC AUC, TAR at FAR 1e-2/1e-3, EER and failures to enrol on a pairs file."""
    from facetrail.engine.models import DlibResNetModel
    from facetrail.evaluation.datasets import identity_folders, read_groups, read_pairs
    from facetrail.evaluation.plots import plot_verification
    from facetrail.evaluation.verification import pair_distances, roc_curves, verification_report

    def body(system, actor):
        config = _evaluation_config(system, actor, augmentation)
        pair_list = read_pairs(pairs, images)
        labels = read_groups(groups) if groups else None
        choice = _normalization_choice(normalization, config)
        if choice != "none" and (plot or save_calibration):
            raise FacetrailError("--plot and --save-calibration take distances as they are: leave out --normalization")
        people = identity_folders(images) if choice != "none" else {}
        paths = [p for pair in pair_list for p in (pair.first, pair.second)] + [p for v in people.values() for p in v]
        templates = _templates_with_progress(paths, config, face_choice, workers, template_cache)
        offsets, described = _normalization(choice, people, templates, 1e-3)
        report = {"pipeline": _pipeline_description(config, face_choice),
                  **verification_report(pair_list, templates, DlibResNetModel.default_threshold, labels, folds, offsets)}
        if described:
            report["score_normalization"] = described
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
    project_to: Annotated[Optional[list[str]], typer.Option("--project-to", help="Project rank 1, FNIR and FPIR to galleries of these sizes (repeat, or a comma list: 1000000,10000000) from every impostor pair of --images.")] = None,
    fmr: Annotated[float, typer.Option("--fmr", help="With --project-to: the threshold where the FMR over every impostor pair of --images is this.")] = 1e-3,
    publish: Annotated[bool, typer.Option("--publish", help="With --project-to: show the projection on the auditors' report page.")] = False,
    workers: WorkersOption = 0,
    template_cache: CacheOption = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Identification rates at ranks 1/5/20 (CMC), FNIR at FPIR 0.01/0.001 and failures to enrol; with --project-to,
    the same projected to larger galleries."""
    from facetrail.evaluation.datasets import identity_folders, images_under, read_groups
    from facetrail.evaluation.identification import cmc_curves, identification_report, split_identities
    from facetrail.evaluation.plots import plot_cmc
    from facetrail.evaluation.projection import projection_report

    def body(system, actor):
        config = _evaluation_config(system, actor, augmentation)
        if gallery_per_subject < 1 or candidates < 1:
            raise FacetrailError("--gallery-per-subject and --candidates must be at least 1")
        sizes = _gallery_sizes(project_to or [])
        _check_operating_point(None, fmr)
        if publish and not sizes:
            raise FacetrailError("--publish publishes the projection: give --project-to")
        people = identity_folders(images)
        split = split_identities(people, gallery_per_subject, images_under(distractors) if distractors else None)
        labels = read_groups(groups) if groups else None
        paths = [p for v in split.gallery.values() for p in v] + [p for _, p in split.mated + split.unmated]
        templates = _templates_with_progress(paths, config, face_choice, workers, template_cache)
        report = {"pipeline": _pipeline_description(config, face_choice), **identification_report(split, templates, labels, candidates)}
        if sizes:
            with progress() as bar:
                bar.add_task("comparing every pair", total=None)
                report["projection"] = projection_report(people, split, templates, fmr, sizes)
        if plot:
            plot_cmc(cmc_curves(split, templates, labels, candidates), plot, title=f"Identification on {images.name}")
            report["plot"] = str(plot)
        if publish:
            report["published"] = _published(system, actor, report, images)
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
    if "projection" in report:
        _print_projection(report["projection"])


def _gallery_sizes(values: list[str]) -> list[int]:
    """``--project-to`` values (repeated or comma-separated, e.g. 1000000 or 1e6) as gallery sizes."""
    sizes = []
    for value in (part.strip() for text in values for part in text.split(",") if part.strip()):
        try:
            size = float(value.replace("_", ""))
        except ValueError:
            size = 0.0
        if not (1 <= size <= 1e12 and size.is_integer()):
            raise FacetrailError(f"--project-to: {value!r} is not a gallery size (a whole number of people from 1)")
        sizes.append(int(size))
    return sizes


def _print_projection(projection: dict) -> None:
    check = projection["check"]
    out.print(f"projection ({projection['method']}):")
    out.print(f"  threshold {projection['threshold']:.4f} ({projection['threshold_rule']}); FMR there {projection['fmr_at_threshold']:.3g}; "
              f"{projection['mates_closer_than_every_impostor']:.1%} of mates closer than every one of {projection['impostor_pairs']:,} "
              "impostor pairs (below the resolution: as measured counts FMR 0 there, rule of three 3 in that many)")
    out.print(f"  check at this gallery's {check['gallery_size']:,} people: rank 1 measured {check['rank_1_measured']:.2%}, projected "
              f"{check['rank_1_projected']:.2%}; FPIR measured {check['fpir_measured']:.2%}, projected {check['fpir_projected']:.2%}")
    for row in projection["by_gallery_size"]:
        low, high = row["as_measured"], row["rule_of_three"]
        out.print(f"  gallery of {row['gallery_size']:,}: rank 1 {high['rank_1']:.2%}–{low['rank_1']:.2%}, FNIR (rank 1) "
                  f"{low['fnir']:.2%}–{high['fnir']:.2%}, FPIR {low['fpir']:.2%}–{high['fpir']:.2%}")


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
    max_photos_per_person: MaxPhotosOption = 10,
    normalization: NormalizationOption = None,
    half: Annotated[Optional[int], typer.Option("--half", help="Only one of two random halves of the people (1 or 2; seed 0): the halves --normalization fsn is cross-fitted on.")] = None,
    workers: WorkersOption = 0,
    template_cache: CacheOption = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """FNMR and FMR per group at one threshold over all genuine and impostor pairs, pair- and identity-weighted,
    worst/best ratios with confidence intervals, and FNIR (rank 1) and FPIR per group."""
    import numpy as np

    from facetrail.engine.models import DlibResNetModel
    from facetrail.evaluation.datasets import identity_folders, identity_halves, read_groups
    from facetrail.evaluation.demographics import demographic_report
    from facetrail.evaluation.plots import plot_verification

    def body(system, actor):
        config = _evaluation_config(system, actor, augmentation)
        _check_operating_point(threshold, fmr)
        if not 10 <= resamples <= 100_000:
            raise FacetrailError("--resamples must be between 10 and 100000")
        if max_photos_per_person < 2:
            raise FacetrailError("--max-photos-per-person must be at least 2 (one genuine pair)")
        choice = _normalization_choice(normalization, config)
        if choice != "none" and (save_calibration or publish):
            raise FacetrailError("--save-calibration and --publish keep the distances searches use, which are not normalized: "
                                 "leave out --normalization")
        if half not in (None, 1, 2):
            raise FacetrailError("--half must be 1 or 2")
        if half and publish:
            raise FacetrailError("--publish publishes the figures of the whole photo set: leave out --half")
        people, labels = identity_folders(images), read_groups(groups)
        if half:
            people = identity_halves(people)[half - 1]
        labelled = {name: paths for name, paths in people.items() if name in labels}
        if not labelled:
            raise FacetrailError(f"{groups}: none of its identities has a folder in {images}")
        templates = _templates_with_progress([p for paths in labelled.values() for p in paths], config, face_choice, workers, template_cache)
        offsets, described = _normalization(choice, labelled, templates, fmr)
        with progress() as bar:
            bar.add_task("comparing every pair", total=None)
            figures, curves, impostors = demographic_report(people, labels, templates, threshold, fmr, resamples,
                                                            max_photos_per_person=max_photos_per_person, offsets=offsets)
        report = {"pipeline": _pipeline_description(config, face_choice), "images_folder": str(images), **figures}
        if half:
            report["half"] = f"half {half} of two random halves of the people (seed 0)"
        if described:
            report["score_normalization"] = described
        if plot:
            groups_at = figures["verification"]["by_group"]
            marks = {name: (g["fmr"]["rate"], g["fnmr"]["rate"]) for name, g in groups_at.items()}
            plot_verification(curves, plot, title=f"Per group on {images.name}, threshold {figures['threshold']['value']:.3f}", operating_points=marks)
            report["plot"] = str(plot)
        if save_calibration:
            compared = int(np.isfinite(impostors.everyone).sum())
            source = f"{images.name}: {compared:,} impostor pairs among {figures['images']:,} photographs of {figures['identities']:,} people"
            report["calibration"] = system.calibrations.save_calibration(actor, DlibResNetModel.name, impostors.everyone,
                                                                         source, groups=impostors.within_group)
        if publish:
            report["published"] = _published(system, actor, report, images)
        return report

    report = acting(data, body)
    if as_json:
        emit_json(report)
        return
    _print_demographics(report)


def _print_demographics(report: dict) -> None:
    def rate(figure: dict, trials: str = "pairs") -> str:
        if figure["rate"] is None:
            return "no comparisons"
        interval = "(95% CI {:.2e} to {:.2e}) ".format(*figure["ci95_bootstrap"]) if figure["ci95_bootstrap"] else ""
        counts = f"{figure['errors']:,} of {figure['trials']:,} {trials}" if "trials" in figure else \
            f"{figure['people_with_errors']:,} of {figure['people']:,} people with errors"
        return f"{figure['rate']:.2e} {interval}{counts}"

    def ratios(section: dict) -> None:
        for name, c in section["worst_to_best"].items():
            interval = "(95% CI {:.2f} to {:.2f})".format(*c["ratio_ci95_bootstrap"]) if c["ratio_ci95_bootstrap"] else ""
            out.print(f"  {name}: worst {c['worst_group']} / best {c['best_group']} = ×{c['ratio']:.2f} {interval}")

    def verification(section: dict) -> None:
        for name, g in section["by_group"].items():
            out.print(f"  {name}, pair-weighted: FNMR {rate(g['fnmr'])}   FMR {rate(g['fmr'])}")
            out.print(f"  {name}, identity-weighted: FNMR {rate(g['fnmr_identity_weighted'])}   FMR {rate(g['fmr_identity_weighted'])}")
        ratios(section)

    out.print(f"{report['identities']:,} identities, {report['images']:,} images ({report['unlabelled_identities_left_out']} unlabelled identities left out); "
              f"failures to enrol: {report['enrolment']['failures_to_enrol']}")
    if "half" in report:
        out.print(f"people: {report['half']}")
    if "score_normalization" in report:
        out.print(f"distances normalized: {report['score_normalization']['method']}")
    out.print(f"threshold {report['threshold']['value']:.4f} ({report['threshold']['rule']}); 95% intervals: bootstrap over identities")
    v = report["verification"]
    out.print("verification, pair-weighted (over all pairs) and identity-weighted (each person's own rate, averaged over "
              "people: the published comparison):")
    verification(v)
    for name, g in v["by_group"].items():
        most = g["most_genuine_pairs"]
        own = "" if most["fnmr"] is None else f", own FNMR {most['fnmr']:.2%}"
        out.print(f"  {name}: {most['identity']} ({most['images']} photographs) gives {most['genuine_pairs']:,} of the group's "
                  f"{most['of_the_group']:,} genuine pairs{own}")
    for name, c in v["cross_group"].items():
        out.print(f"  {name}: FMR {rate(c['fmr'])}")
    capped = report["capped"]
    out.print(f"verification with {capped['rule']} ({capped['images']:,} images):")
    verification(capped["verification"])
    out.print("identification:")
    for name, g in report["identification"]["by_group"].items():
        out.print(f"  {name}: FNIR (rank 1) {rate(g['fnir_rank_1'], 'searches')}, identity-weighted {rate(g['fnir_rank_1_identity_weighted'])}   "
                  f"FPIR {rate(g['fpir'], 'searches')}")
    ratios(report["identification"])
    out.print("overall FNMR at a false match rate over all impostor pairs:")
    for fmr, point in report["overall"]["fnmr_at_fmr"].items():
        resolution = "" if point["resolvable"] else " (not resolvable)"
        out.print(f"  FMR {fmr}: FNMR {point['fnmr']:.2%} (identity-weighted {point['fnmr_identity_weighted']:.2%}) at {point['threshold']:.4f}; "
                  f"{point['false_matches']:,} of {point['impostor_pairs']:,} impostor pairs{resolution}")


@evaluate_app.command("normalization")
def evaluate_normalization(
    images: Annotated[Path, typer.Option("--images", help="Folder with one subfolder of images per identity.")],
    groups: Annotated[Path, typer.Option("--groups", help="CSV with columns identity, group.")],
    pairs: Annotated[Path, typer.Option("--pairs", help="LFW-format pairs file among --images, for the 10-fold accuracy.")],
    fmr: Annotated[float, typer.Option("--fmr", help="The false match rate the normalization and the threshold aim at.")] = 1e-3,
    clusters: Annotated[int, typer.Option("--clusters", help="k of the k-means (100 in Terhörst et al. 2020).")] = 100,
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples of the identities for the confidence intervals.")] = 1000,
    face_choice: FaceChoiceOption = "centre",
    augmentation: AugmentationOption = None,
    publish: Annotated[bool, typer.Option("--publish", help="Show the before/after table on the auditors' report page.")] = False,
    workers: WorkersOption = 0,
    template_cache: CacheOption = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fair score normalization, before and after: worst/best FNMR and FMR ratios (identity- and pair-weighted), the
    FNMR at the FMR, the 10-fold accuracy, and whether it passes the rule for becoming the default."""
    from facetrail.engine.models import DlibResNetModel
    from facetrail.evaluation.datasets import identity_folders, read_groups, read_pairs
    from facetrail.evaluation.demographics import demographic_report
    from facetrail.evaluation.normalization import adoption, summary
    from facetrail.evaluation.verification import verification_report

    def body(system, actor):
        config = _evaluation_config(system, actor, augmentation)
        _check_operating_point(None, fmr)
        if clusters < 1:
            raise FacetrailError("--clusters must be at least 1")
        people, labels, pair_list = identity_folders(images), read_groups(groups), read_pairs(pairs, images)
        labelled = {name: paths for name, paths in people.items() if name in labels}
        paths = [p for v in labelled.values() for p in v] + [p for pair in pair_list for p in (pair.first, pair.second)]
        templates = _templates_with_progress(paths, config, face_choice, workers, template_cache)
        offsets, described = _normalization("fsn", labelled, templates, fmr, clusters)
        measured = {}
        for name, shift in (("before", None), ("after", offsets)):
            with progress() as bar:
                bar.add_task(f"comparing every pair ({name})", total=None)
                figures, _, _ = demographic_report(labelled, labels, templates, None, fmr, resamples, offsets=shift)
            measured[name] = summary(figures, verification_report(pair_list, templates, DlibResNetModel.default_threshold, offsets=shift))
        report = {"pipeline": _pipeline_description(config, face_choice), "protocol": "score_normalization",
                  "images_folder": str(images), "pairs_file": str(pairs), **described, **measured,
                  **adoption(measured["before"], measured["after"])}
        if publish:
            report["published"] = _published(system, actor, report, images)
        return report

    report = acting(data, body)
    if as_json:
        emit_json(report)
        return
    out.print(f"{report['method']}; {report['clusters']} clusters, FMR {report['fmr']:g}")
    for name in ("before", "after"):
        m = report[name]
        shown = "   ".join(f"{rate} ×{c['ratio']:.2f} ({c['worst_group']} worst)" for rate, c in m["ratios"].items() if c)
        out.print(f"{name}: threshold {m['threshold']:.4f}; {shown}; FNMR at FMR 0.001 {m['fnmr_at_fmr_0.001']:.2%} "
                  f"(identity-weighted {m['fnmr_identity_weighted_at_fmr_0.001']:.2%}); accuracy ({m['accuracy_kfold']['folds']}-fold) "
                  f"{m['accuracy_kfold']['mean']:.4f} ± {m['accuracy_kfold']['std']:.4f}")
    for test, passed in report["tests"].items():
        out.print(f"{'passes' if passed else 'FAILS'}: {test}")
    out.print("adopt as the default: " + ("yes" if report["adopt"] else "no"))


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
