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
            found.append({**document, "origin": origin})
    return found
