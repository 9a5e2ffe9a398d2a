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
    "fnmr": ("verification", "false non-match rate", "two photographs of the same person were judged different"),
    "fmr": ("verification", "false match rate", "photographs of two different people were judged the same"),
    "fnir_rank_1": ("identification", "search miss rate (FNIR, rank 1)", "a search missed a person who was in the gallery"),
    "fpir": ("identification", "false candidate rate (FPIR)", "a search of someone not in the gallery returned a candidate"),
}
"""Error rate -> (part of the report, name, what one error is)."""
PRODUCE_COMMAND = ("facetrail evaluate demographics --images PHOTOS --groups GROUPS.csv --publish")
"""The command that measures and publishes this installation's own per-group figures."""


def publish(datadir: DataDir, report: dict[str, Any], dataset: str) -> Path:
    """Save a demographics report as this data directory's published figures for its model (atomically)."""
    model = report["pipeline"]["model"]
    document = {"format": FORMAT, "dataset": dataset, "measured": dt.date.today().isoformat(), "report": report}
    path = datadir.root / "evaluations" / f"demographics-{model}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, allow_nan=False, default=str)
    os.replace(temp, path)
    return path


def published_figures(datadir: DataDir, model: str) -> list[dict[str, Any]]:
    """The figures for ``model``: this installation's own first (``"origin": "local"``), then those shipped with
    facetrail (``"origin": "facetrail"``)."""
    found = []
    for origin, folder in (("local", datadir.root / "evaluations"), ("facetrail", SHIPPED)):
        for path in sorted(folder.glob(f"demographics-{model}*.json")):
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise FacetrailError(f"{path}: unreadable published figures: {exc}") from exc
            if document.get("format") != FORMAT:
                raise FacetrailError(f"{path}: not published figures in format {FORMAT!r}")
            found.append({**document, "origin": origin, "differences": differences(document["report"])})
    return found


def differences(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each error rate's worst/best comparison between groups in a demographics report, with ``large`` (a ratio of
    at least LARGE_DIFFERENCE, or errors in one group only) and a plain ``sentence`` saying what it means."""
    found = []
    for rate, (part, name, error) in ERROR_RATES.items():
        comparison = report.get(part, {}).get("worst_to_best", {}).get(rate)
        if not comparison:
            continue
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
