"""Identification figures projected to galleries larger than any test set, from the impostor distribution.

The comparisons of a probe with the N enrolled people who are not its mate are taken as independent, each a false
match at threshold T with probability FMR(T), the fraction of impostor pairs at or below T:

* an unmated probe returns a candidate within T with probability FPIR(N, T) = 1 − (1 − FMR(T))^N;
* a mated probe whose mate is at distance g has it as the nearest face with probability (1 − FMR(g))^(N−1);
  averaged over the mated probes, that is the rank-1 identification rate, and counting only mates within T,
  1 − FNIR(N, T) at rank 1.

FMR comes from the empirical impostor distribution of M pairs, which cannot resolve rates below 1/M: below its
smallest impostor distance it reads 0. Every figure is therefore given twice: ``as_measured`` (FMR 0 there, the
optimistic end) and ``rule_of_three`` (FMR at least 3/M, the 95 % upper bound when none of M pairs came that close:
the pessimistic end), with the share of mated probes whose mate is closer than every impostor pair. Independence is
an assumption (some faces resemble many others), so the projection is checked against the figures measured at the
test gallery's own size.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from facetrail.evaluation.demographics import labelled_set, score_pairs, threshold_at_fmr
from facetrail.evaluation.identification import Split, search_all
from facetrail.evaluation.templates import ImageTemplate

BOUNDS = ("as_measured", "rule_of_three")
METHOD = ("FPIR(N, T) = 1 − (1 − FMR(T))^N for an unmated probe; rank 1 = mean over mated probes of "
          "(1 − FMR(g))^(N−1), g the mate's distance; FNIR(N, T) = 1 − mean of that over mates within T; FMR from the "
          "empirical impostor distribution, comparisons assumed independent")


def false_match_rates(sorted_impostors: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """The fraction of impostor distances at or below each distance."""
    return np.searchsorted(sorted_impostors, distances, side="right") / sorted_impostors.size


def project(mate_distances: np.ndarray, impostors: np.ndarray, threshold: float, gallery_sizes: list[int]) -> dict:
    """Rank 1, FNIR and FPIR at ``threshold`` for each gallery size (module docstring); a mate distance of +inf (a
    failed probe) never comes first."""
    mate_distances = np.asarray(mate_distances, dtype=np.float64)
    impostors = np.sort(np.asarray(impostors, dtype=np.float64))
    floor = 3.0 / impostors.size
    at_mates = false_match_rates(impostors, mate_distances)
    at_threshold = float(false_match_rates(impostors, np.array([threshold]))[0])
    within = mate_distances <= threshold
    rates = {"as_measured": (at_mates, at_threshold), "rule_of_three": (np.maximum(at_mates, floor), max(at_threshold, floor))}
    rows = []
    for size in gallery_sizes:
        row: dict = {"gallery_size": int(size)}
        for bound, (mates, unmated) in rates.items():
            first = np.power(1.0 - mates, size - 1) * np.isfinite(mate_distances)
            row[bound] = {"rank_1": float(first.mean()), "fnir": float(1.0 - (first * within).mean()),
                          "fpir": float(1.0 - (1.0 - unmated) ** size)}
        rows.append(row)
    return {
        "method": METHOD,
        "threshold": float(threshold),
        "impostor_pairs": int(impostors.size),
        "fmr_at_threshold": at_threshold,
        "smallest_impostor_distance": float(impostors[0]),
        "mated_probes": int(mate_distances.size),
        "mates_closer_than_every_impostor": float(np.mean(mate_distances < impostors[0])),
        "by_gallery_size": rows,
    }


def projection_report(identities: Mapping[str, list[Path]], split: Split, templates: Mapping[Path, ImageTemplate],
                      fmr: float, gallery_sizes: list[int]) -> dict:
    """The projection of the split's searches to ``gallery_sizes`` at the threshold where the FMR over every impostor
    pair of ``identities`` is ``fmr``, checked against the split's own gallery size."""
    data, _ = labelled_set(identities, dict.fromkeys(identities, "everyone"), templates)
    scores = score_pairs(data)
    threshold, rule = threshold_at_fmr(scores, fmr)
    impostors = scores.all_impostors()
    ranks, mate_distances, top1 = search_all(split, templates, candidate_list_length=len(split.gallery))
    if not mate_distances.size or not top1.size:
        raise ValueError("a projection needs mated and unmated searches")
    report = project(mate_distances, impostors, threshold, [len(split.gallery), *gallery_sizes])
    at_own_size = report["by_gallery_size"].pop(0)["as_measured"]
    report["threshold_rule"] = rule
    report["check"] = {
        "gallery_size": len(split.gallery),
        "rank_1_measured": float(np.mean(ranks == 1)),
        "rank_1_projected": at_own_size["rank_1"],
        "fpir_measured": float(np.mean(top1 <= threshold)),
        "fpir_projected": at_own_size["fpir"],
    }
    return report
