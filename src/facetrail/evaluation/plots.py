"""Accuracy plots: ROC and DET for verification, CMC for identification.

Figures are built on ``matplotlib.figure.Figure`` directly, never through
pyplot's global state, so plotting is safe on headless servers and in threads.
The file format follows the path's suffix (.png, .svg or .pdf).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike

from facetrail.evaluation.metrics import RocCurve

_FORMATS = (".png", ".svg", ".pdf")
_RATE_AXIS = (1e-4, 1.0)
_PLOTTED_POINTS = 3000


def _output(path: str | PathLike[str], curves: Mapping[str, object]) -> Path:
    target = Path(path)
    if target.suffix.lower() not in _FORMATS:
        raise ValueError(f"plot path must end in one of {', '.join(_FORMATS)}, got {target.name!r}")
    if not curves:
        raise ValueError("no curves to plot")
    return target


def _thinned(curve: RocCurve, points: int = _PLOTTED_POINTS) -> RocCurve:
    """The curve at about ``points`` of its thresholds, densest where FMR is small (millions of scores plot slowly)."""
    size = curve.thresholds.size
    if size <= points:
        return curve
    keep = np.unique(np.concatenate((np.rint(np.geomspace(1, size, points)).astype(np.int64) - 1,
                                     np.linspace(0, size - 1, points // 4).astype(np.int64))))
    return RocCurve(thresholds=curve.thresholds[keep], fmr=curve.fmr[keep], fnmr=curve.fnmr[keep])


def _lowest_rate(rates: Iterable[np.ndarray]) -> float:
    """The DET axis's lower end: 1e-4, or the power of ten below the smallest non-zero rate when that is lower (so
    a set with millions of impostor pairs shows its low-FMR end)."""
    positive = [r[r > 0].min() for r in rates if (r > 0).any()]
    smallest = min(positive, default=_RATE_AXIS[0])
    return min(_RATE_AXIS[0], 10.0 ** np.floor(np.log10(smallest)))


def plot_verification(
    curves: Mapping[str, RocCurve],
    path: str | PathLike[str],
    title: str = "Verification accuracy",
    operating_points: Mapping[str, tuple[float, float]] | None = None,
) -> Path:
    """ROC (TAR vs FAR, log FAR 1e-4..1) and DET (FNMR vs FMR, both log) panels, one line per label; an
    ``operating_points`` entry (label → FMR, FNMR) marks that label's curve at the threshold in use."""
    target = _output(path, curves)
    figure = Figure(figsize=(11, 4.8), layout="constrained")
    roc, det = figure.subplots(1, 2)
    for label, curve in curves.items():
        curve = _thinned(curve)
        roc.plot(curve.fmr, curve.tar, label=label)
        (line,) = det.plot(curve.fmr, curve.fnmr, label=label)
        if operating_points and label in operating_points:
            det.plot(*operating_points[label], marker="o", color=line.get_color(), linestyle="none")
    # Rates of 0 have no place on a log axis: mask them rather than clip them to a fake value.
    roc.set_xscale("log", nonpositive="mask")
    roc.set(xlim=_RATE_AXIS, ylim=(0.0, 1.01), title="ROC")
    roc.set(xlabel="False accept rate (FMR)", ylabel="True accept rate (1 - FNMR)")
    det.set_xscale("log", nonpositive="mask")
    det.set_yscale("log", nonpositive="mask")
    det.set(xlim=(_lowest_rate(c.fmr for c in curves.values()), 1.0),
            ylim=(_lowest_rate(c.fnmr for c in curves.values()), 1.0), title="DET")
    det.set(xlabel="False match rate (FMR)", ylabel="False non-match rate (FNMR)")
    for axes in (roc, det):
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    figure.savefig(target, dpi=150)
    return target


def plot_cmc(
    curves: Mapping[str, ArrayLike], path: str | PathLike[str], title: str = "Identification accuracy (CMC)"
) -> Path:
    """Identification rate against rank 1..N, one line per label (``curves`` as returned by ``cmc_curve``)."""
    target = _output(path, curves)
    rates_by_label = {label: np.asarray(rates, dtype=np.float64) for label, rates in curves.items()}
    for label, rates in rates_by_label.items():
        if rates.ndim != 1 or rates.size == 0:
            raise ValueError(f"CMC curve {label!r} must be a non-empty 1-D array, got shape {rates.shape}")
    figure = Figure(figsize=(6.4, 4.8), layout="constrained")
    axes = figure.subplots()
    for label, rates in rates_by_label.items():
        axes.plot(np.arange(1, rates.size + 1), rates, marker="o" if rates.size <= 20 else None, label=label)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(ylim=(0.0, 1.01), title=title, xlabel="Rank", ylabel="Identification rate")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.savefig(target, dpi=150)
    return target


def plot_edc(
    curves: Mapping[str, ArrayLike], fractions: ArrayLike, path: str | PathLike[str],
    title: str = "Error versus discard (ISO/IEC 29794-1)",
) -> Path:
    """FNMR at a fixed threshold against the fraction of lowest-quality genuine pairs discarded, one line per quality
    component; random discarding is the flat line at the first value."""
    target = _output(path, curves)
    x = np.asarray(fractions, dtype=np.float64)
    figure = Figure(figsize=(7.5, 5), layout="constrained")
    axes = figure.subplots()
    for label, fnmr in curves.items():
        fnmr = np.asarray(fnmr, dtype=np.float64)
        if fnmr.shape != x.shape:
            raise ValueError(f"EDC curve {label!r} has {fnmr.size} points for {x.size} discard fractions")
        axes.plot(x, fnmr, label=label, linestyle=":" if label.startswith("ideal") else "-")
    start = float(np.asarray(next(iter(curves.values())))[0])
    axes.axhline(start, color="grey", linewidth=0.8, label="random discarding")
    axes.set(xlim=(0, x[-1]), ylim=(0, start * 1.15 or 1), title=title,
             xlabel="Fraction of genuine pairs discarded (lowest quality first)", ylabel="FNMR at the fixed threshold")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", ncol=2)
    figure.savefig(target, dpi=150)
    return target
