"""Accuracy and demographic differentials of the model in use, for the auditor's report page.

Two sources, both shown: the figures an agency measured itself and saved with
``facetrail evaluate demographics --publish`` (kept in ``DATA/evaluations/``),
and the figures the facetrail project measured on its development set and ships
with the package (``published/`` beside this module). Each says which model,
which photographs and which threshold it was measured with, so a reader can
tell whether it applies to the model in use.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from facetrail.datadir import DataDir
from facetrail.errors import FacetrailError

FORMAT = "facetrail.demographics.v1"
SHIPPED = Path(__file__).parent / "published"
LARGE_DIFFERENCE = 1.5
"""A worst/best ratio of an error rate at least this large is flagged as a large difference between groups."""
ERROR_RATES = {
    ("fnmr_identity_weighted", "fnmr"): ("verification", "false non-match rate", "two photographs of the same person were judged different"),
    ("fmr_identity_weighted", "fmr"): ("verification", "false match rate", "photographs of two different people were judged the same"),
    ("fnir_rank_1_identity_weighted", "fnir_rank_1"): ("identification", "search miss rate (FNIR, rank 1)", "a search missed a person who was in the gallery"),
    ("fpir",): ("identification", "false candidate rate (FPIR)", "a search of someone not in the gallery returned a candidate"),
}
"""Error rate (its identity-weighted key first, then the pair-weighted one that reports made before issue 19 have
alone) -> (part of the report, name, what one error is). Differences between groups are judged on each person's own
rate averaged over people, as a few prolific people dominate rates counted over pairs (docs/evaluation.md); an
unmated search is a person with one photograph, so FPIR counts every person once as it is."""
PRODUCE_COMMAND = ("facetrail evaluate demographics --images PHOTOS --groups GROUPS.csv --publish")
"""The command that measures and publishes this installation's own per-group figures."""


def publish(datadir: DataDir, report: dict[str, Any], dataset: str) -> Path:
    """Save an evaluation report (demographics, identification with its projection, or score normalization) as this
    data directory's published figures of that kind for its model (atomically)."""
    model = report["pipeline"]["model"]
    document = {"format": FORMAT, "dataset": dataset, "measured": dt.date.today().isoformat(), "report": report}
    path = datadir.root / "evaluations" / f"{report['protocol']}-{model}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, allow_nan=False, default=str)
    os.replace(temp, path)
    return path


def published_figures(datadir: DataDir, model: str) -> list[dict[str, Any]]:
    """The demographics figures for ``model``: this installation's own first (``"origin": "local"``), then those
    shipped with facetrail (``"origin": "facetrail"``); each with its ``differences`` between groups, and from the same
    origin, when published, ``model_limits`` (``model_limits``) and ``score_normalization`` (the report of
    ``evaluate normalization``: ``before``, ``after``, ``adopt``, ``tests``)."""
    found = []
    for origin, folder in (("local", datadir.root / "evaluations"), ("facetrail", SHIPPED)):
        projection = next(iter(_documents(folder, f"identification-{model}")), None)
        normalization = next(iter(_documents(folder, f"score_normalization-{model}")), None)
        for document in _documents(folder, f"demographics-{model}"):
            figures = {**document, "origin": origin, "differences": differences(document["report"])}
            if projection:
                figures["model_limits"] = model_limits(document, projection)
            if normalization:
                figures["score_normalization"] = {**normalization["report"], "measured": normalization["measured"]}
            found.append(figures)
    return found


def _documents(folder: Path, prefix: str) -> list[dict[str, Any]]:
    """The published documents in ``folder`` whose file name starts with ``prefix``, by name."""
    documents = []
    for path in sorted(folder.glob(f"{prefix}*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FacetrailError(f"{path}: unreadable published figures: {exc}") from exc
        if document.get("format") != FORMAT:
            raise FacetrailError(f"{path}: not published figures in format {FORMAT!r}")
        documents.append(document)
    return documents


def model_limits(demographics: dict[str, Any], identification: dict[str, Any]) -> dict[str, Any]:
    """The model's all-pairs figures: FNMR at FMR 1e-3, 1e-4 and 1e-5 (``fnmr_at_fmr``, from the demographics
    report; absent from reports made before issue 19) and the identification figures projected to larger galleries
    (``projection``, from ``evaluate identify --project-to``), with the data set and date of each."""
    return {
        "fnmr_at_fmr": demographics["report"]["overall"].get("fnmr_at_fmr"),
        "fnmr_dataset": demographics["dataset"], "fnmr_measured": demographics["measured"],
        "projection": identification["report"]["projection"],
        "projection_dataset": identification["dataset"], "projection_measured": identification["measured"],
    }


def model_limits_sentence(datadir: DataDir, model: str) -> str | None:
    """One sentence a lead report can cite on what the model misses and how a large gallery confuses it, from the
    first published figures that have the model's limits (this installation's own before facetrail's); None when
    none have."""
    limits = next((f["model_limits"] for f in published_figures(datadir, model) if f.get("model_limits", {}).get("fnmr_at_fmr")), None)
    if limits is None:
        return None
    at_fmr = limits["fnmr_at_fmr"]["0.001"]
    projection = limits["projection"]
    largest = projection["by_gallery_size"][-1]
    low, high = largest["as_measured"]["fpir"], largest["rule_of_three"]["fpir"]
    share = f"{low:.0%}" if f"{low:.0%}" == f"{high:.0%}" else f"{low:.0%}–{high:.0%}"
    return (f"On labelled photographs ({limits['fnmr_dataset']}), this model misses {at_fmr['fnmr']:.1%} of same-person "
            f"pairs ({at_fmr['fnmr_identity_weighted']:.1%} averaged over people) at a false-match rate of 1 in 1,000; in a gallery of {largest['gallery_size']:,} people, someone who "
            f"is not in it still has a face within the threshold for 1 false match in "
            f"{round(1 / projection['fmr_at_threshold']):,} in {share} of searches (projected from "
            f"{projection['impostor_pairs']:,} impostor pairs of {limits['projection_dataset']}).")


def differences(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each error rate's worst/best comparison between groups in a demographics report, with ``large`` (a ratio of
    at least LARGE_DIFFERENCE, or errors in one group only) and a plain ``sentence`` saying what it means."""
    found = []
    for keys, (part, name, error) in ERROR_RATES.items():
        compared = report.get(part, {}).get("worst_to_best", {})
        rate = next((key for key in keys if compared.get(key)), None)
        if rate is None:
            continue
        comparison = compared[rate]
        ratio, interval = comparison.get("ratio"), comparison.get("ratio_ci95_bootstrap")
        large = ratio is None or ratio >= LARGE_DIFFERENCE
        worst, best = comparison["worst_group"], comparison["best_group"]
        rates = f"{comparison['worst']:.2%} against {comparison['best']:.2%}"
        if ratio is None:
            sentence = f"Large difference in the {name}: {worst} made errors ({error}), {best} made none ({rates})."
        elif not large:
            sentence = f"No large difference in the {name}: {worst} ×{ratio:.2f} of {best} ({rates})."
        else:
            sentence = f"Large difference in the {name}: for {worst}, {error} {ratio:.1f} times as often as for {best} ({rates})"
            if interval and None not in interval:
                chance = "so it is not chance" if interval[0] > 1 else "so it may yet be chance"
                sentence += f"; the 95% interval of the ratio is {interval[0]:.2f}–{interval[1]:.2f}, {chance}"
            sentence += "."
        found.append({"rate": rate, "part": part, "name": name, "large": large, "sentence": sentence, **comparison})
    return found
