"""Demographic differentials (NISTIR 8280, RCW 43.386.050): error rates per group at one operating threshold.

On a folder-per-identity photo set whose identities carry group labels:

* **every** genuine pair (two images of one identity) and **every** impostor
  pair (images of two different identities) is compared, within each group and
  across groups, so a group's false match rate resolves to about one over its
  number of impostor pairs rather than over the few in a pairs file;
* one **global threshold** is used for every group: given, or set so that the
  false match rate over all impostor pairs is the target (``--fmr``), as an
  agency would run one threshold for everybody;
* FNMR per group counts the group's genuine pairs above the threshold; FMR per
  group counts the impostor pairs **within** the group at or below it (NIST's
  convention: impostors of the same group are the ones that are confused);
  cross-group FMR is reported separately;
* identification per group: the first image of an identity with several is
  enrolled, the others are mated searches, and the images of identities with one
  image are unmated searches (``identification.split_identities``); FNIR at rank
  1 is the share of mated searches whose mate is not the top candidate within the
  threshold, FPIR the share of unmated searches whose top candidate is within it.

An image that fails to give a template stays in every count: its pairs have
distance +inf (a non-match), so its genuine pairs are errors.

Every verification rate comes **pair-weighted** (errors over all the group's pairs, as NIST counts) and
**identity-weighted** (each person's own rate, over their own pairs, averaged over the people with at least one
such pair): pair counts grow with the square of a person's photographs, so a few prolific people dominate the
pair-weighted rates (in lfw-dev one man's 530 photographs give two thirds of the men's genuine pairs), and the
identity-weighted ones are the published comparison between groups. The same figures are given again with at most
``max_photos_per_person`` photographs of each person (a seeded choice), at the same threshold.

Optionally, distances are **normalized** before anything is counted: each image carries an offset and a pair's
distance becomes ``d - (offset_a + offset_b) / 2`` (``engine.score_normalization``).

Confidence intervals (95 %) come in two kinds: ``ci95_bootstrap`` is a
percentile bootstrap over **identities**, resampled within each group (pairs
that share a person are not independent, so this is the honest one), and
``ci95_wilson`` is the Wilson score interval that treats every comparison as
independent (narrower; still useful when no error was seen, where the bootstrap
collapses to zero width).

Pairs are scored in blocks of rows of the distance matrix, so memory holds one
block and the impostor distances (4 bytes per pair), never the full matrix's
temporaries.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetrail.engine.score_normalization import normalized
from facetrail.evaluation import metrics
from facetrail.evaluation.identification import search_all, split_identities
from facetrail.evaluation.templates import ImageTemplate, failure_summary

CONFIDENCE = 0.95
BLOCK_ROWS = 512
"""Rows of the distance matrix scored at a time (512 × 7,311 distances ≈ 30 MB in float64)."""
CROSS = " × "
"""Joins two group names for the impostor pairs between them."""
FMR_POINTS = (1e-3, 1e-4, 1e-5)
"""The false match rates at which the overall FNMR is reported (the model's limits, docs/model.md)."""
MAX_PHOTOS_PER_PERSON = 10
"""The verification figures are given again with at most this many photographs of each person."""


@dataclass(frozen=True, eq=False)
class LabelledSet:
    """Images with their identity and group, and an embedding per image (NaN row for a failure to enrol)."""

    paths: list[Path]
    embeddings: np.ndarray
    image_identity: np.ndarray
    """Index into ``identities`` per image."""
    identities: list[str]
    identity_group: np.ndarray
    """Index into ``groups`` per identity."""
    groups: list[str]
    offsets: np.ndarray
    """Score normalization offset per image (zeros: distances as they are)."""

    @property
    def images_per_identity(self) -> np.ndarray:
        return np.bincount(self.image_identity, minlength=len(self.identities))


@dataclass(frozen=True, eq=False)
class PairScores:
    """Every genuine distance (with its identity) and every impostor distance, by group pair."""

    genuine: np.ndarray
    genuine_identity: np.ndarray
    impostor: dict[tuple[int, int], np.ndarray]
    """``(g, h)`` with ``g <= h`` → distances (float32) of impostor pairs between groups g and h."""

    def all_impostors(self) -> np.ndarray:
        return np.concatenate(list(self.impostor.values())).astype(np.float64)


@dataclass(frozen=True, eq=False)
class Impostors:
    """Every impostor distance of a labelled set, and those between two people of the same group, by group (for the
    calibration tables of ``evaluate demographics --save-calibration``)."""

    everyone: np.ndarray
    within_group: dict[str, np.ndarray]


def labelled_set(
    identities: Mapping[str, list[Path]], groups: Mapping[str, str], templates: Mapping[Path, ImageTemplate],
    offsets: Mapping[Path, float] | None = None,
) -> tuple[LabelledSet, list[str]]:
    """The labelled images (identities without a group label are left out) and the names of those left out;
    ``offsets`` normalizes their distances (module docstring)."""
    names = sorted(name for name in identities if name in groups)
    unlabelled = sorted(name for name in identities if name not in groups)
    if not names:
        raise ValueError("no identity of the photo set has a group label")
    group_names = sorted({groups[name] for name in names})
    paths = [path for name in names for path in identities[name]]
    image_identity = np.repeat(np.arange(len(names)), [len(identities[name]) for name in names])
    dimension = next((templates[p].embedding.size for p in paths if not templates[p].failed), 1)
    embeddings = np.full((len(paths), dimension), np.nan)
    for row, path in enumerate(paths):
        if not templates[path].failed:
            embeddings[row] = templates[path].embedding
    identity_group = np.array([group_names.index(groups[name]) for name in names])
    image_offsets = np.array([(offsets or {}).get(path, 0.0) for path in paths])
    return LabelledSet(paths, embeddings, image_identity, names, identity_group, group_names, image_offsets), unlabelled


def cap_photographs(identities: Mapping[str, list[Path]], most: int, seed: int = 0) -> dict[str, list[Path]]:
    """At most ``most`` photographs of each person, drawn at random (``seed``) from those with more."""
    if most < 2:
        raise ValueError("at least 2 photographs per person are needed for a genuine pair")
    rng = np.random.default_rng(seed)
    capped = {}
    for name in sorted(identities):
        paths = identities[name]
        capped[name] = paths if len(paths) <= most else [paths[k] for k in sorted(rng.choice(len(paths), most, replace=False))]
    return capped


def threshold_at_fmr(scores: PairScores, fmr: float) -> tuple[float, str]:
    """The largest threshold whose FMR over all impostor pairs is at most ``fmr``, and that rule in words."""
    impostors = scores.all_impostors()
    point = metrics.tar_at_far(scores.genuine, impostors, fmr)
    return point.threshold, f"FMR {fmr:g} over all {impostors.size:,} impostor pairs (actual {point.far_actual:.3g})"


def distance_blocks(embeddings: np.ndarray, block_rows: int = BLOCK_ROWS, offsets: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(first_row, block)`` where ``block[r, c]`` is the distance between rows ``first_row + r`` and ``first_row + c``
    (columns from ``first_row`` on; the caller keeps ``c > r``), normalized by per-row ``offsets`` if given. A NaN
    embedding gives +inf distances."""
    squared = np.einsum("ij,ij->i", embeddings, embeddings)
    for start in range(0, len(embeddings), block_rows):
        stop = min(start + block_rows, len(embeddings))
        block = squared[start:stop, None] + squared[None, start:] - 2.0 * embeddings[start:stop] @ embeddings[start:].T
        block = np.sqrt(np.maximum(block, 0.0))
        if offsets is not None:
            block = normalized(block, offsets[start:stop, None], offsets[None, start:])
        block[np.isnan(block)] = np.inf
        yield start, block


def _upper(block: np.ndarray) -> np.ndarray:
    """Mask of the block's cells above the diagonal of the full matrix (each unordered pair once)."""
    rows, columns = block.shape
    return np.arange(columns)[None, :] > np.arange(rows)[:, None]


def score_pairs(data: LabelledSet, block_rows: int = BLOCK_ROWS) -> PairScores:
    """Compare every pair of images once."""
    image_group = data.identity_group[data.image_identity]
    groups = len(data.groups)
    genuine, genuine_identity = [], []
    impostor: dict[tuple[int, int], list[np.ndarray]] = {(g, h): [] for g in range(groups) for h in range(g, groups)}
    for start, block in distance_blocks(data.embeddings, block_rows, data.offsets):
        stop = start + block.shape[0]
        upper = _upper(block)
        same = data.image_identity[start:stop, None] == data.image_identity[None, start:]
        mated = upper & same
        genuine.append(block[mated])
        genuine_identity.append(np.broadcast_to(data.image_identity[start:stop, None], block.shape)[mated])
        low = np.minimum(image_group[start:stop, None], image_group[None, start:])
        high = np.maximum(image_group[start:stop, None], image_group[None, start:])
        different = upper & ~same
        for (g, h), parts in impostor.items():
            parts.append(block[different & (low == g) & (high == h)].astype(np.float32))
    return PairScores(
        genuine=np.concatenate(genuine),
        genuine_identity=np.concatenate(genuine_identity),
        impostor={key: np.concatenate(parts) for key, parts in impostor.items()},
    )


def impostor_matches(data: LabelledSet, threshold: float, block_rows: int = BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Identity indices ``(a, b)`` of every impostor pair at or below ``threshold`` (a false match), one entry per pair."""
    first, second = [], []
    for start, block in distance_blocks(data.embeddings, block_rows, data.offsets):
        stop = start + block.shape[0]
        same = data.image_identity[start:stop, None] == data.image_identity[None, start:]
        rows, columns = np.nonzero(_upper(block) & ~same & (block <= threshold))
        first.append(data.image_identity[start + rows])
        second.append(data.image_identity[start + columns])
    return np.concatenate(first), np.concatenate(second)


class IdentityBootstrap:
    """Resamples of the identities with replacement, within each group: ``weights[b, a]`` is how often identity ``a``
    is drawn in resample ``b``."""

    def __init__(self, identity_group: np.ndarray, resamples: int, seed: int = 0) -> None:
        if resamples < 1:
            raise ValueError("resamples must be at least 1")
        rng = np.random.default_rng(seed)
        self.weights = np.zeros((resamples, identity_group.size), dtype=np.float32)
        for group in np.unique(identity_group):
            members = np.flatnonzero(identity_group == group)
            self.weights[:, members] = rng.multinomial(members.size, np.full(members.size, 1.0 / members.size), size=resamples)

    def per_identity_rate(self, errors: np.ndarray, trials: np.ndarray) -> np.ndarray:
        """A rate whose errors and trials add up per identity (FNMR, FNIR, FPIR), in every resample."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.weights @ errors.astype(np.float64)) / (self.weights @ trials.astype(np.float64))

    def pair_rate(self, first: np.ndarray, second: np.ndarray, images: np.ndarray, one: np.ndarray,
                  other: np.ndarray | None = None) -> np.ndarray:
        """FMR over the impostor pairs among the identities ``one`` (or between ``one`` and ``other``), with false
        matches between identities ``first[k]`` and ``second[k]``, in every resample. A drawn identity's copies are
        never paired with each other (those would be genuine pairs)."""
        matches = np.zeros(self.weights.shape[0])
        pairs, counts = np.unique(np.stack([first, second]).reshape(2, -1), axis=1, return_counts=True)
        for chunk in range(0, counts.size, 4096):
            a, b, c = pairs[0, chunk:chunk + 4096], pairs[1, chunk:chunk + 4096], counts[chunk:chunk + 4096]
            matches += (self.weights[:, a] * self.weights[:, b]) @ c.astype(np.float32)
        weighted_one = self.weights[:, one] @ images[one].astype(np.float64)
        if other is None:
            trials = (weighted_one ** 2 - (self.weights[:, one].astype(np.float64) ** 2) @ (images[one].astype(np.float64) ** 2)) / 2
        else:
            trials = weighted_one * (self.weights[:, other] @ images[other].astype(np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            return matches / trials


def _interval(resampled: np.ndarray) -> list[float] | None:
    finite = resampled[~np.isnan(resampled)]
    if finite.size == 0:
        return None
    tail = (1 - CONFIDENCE) / 2
    return [float(v) for v in np.quantile(finite, [tail, 1 - tail], method="inverted_cdf")]


def _rate(errors: int, trials: int, resampled: np.ndarray) -> dict:
    return {
        "rate": errors / trials if trials else None,
        "errors": int(errors),
        "trials": int(trials),
        "ci95_bootstrap": _interval(resampled) if trials else None,
        "ci95_wilson": list(metrics.wilson_interval(int(errors), int(trials), CONFIDENCE)) if trials else None,
    }


def _per_person(errors: np.ndarray, trials: np.ndarray, members: np.ndarray, bootstrap: IdentityBootstrap) -> tuple[dict, np.ndarray]:
    """Each person's own rate (their errors over their trials), averaged over the people of ``members`` (a mask) with
    at least one trial, and that average in every bootstrap resample."""
    counted = members & (trials > 0)
    own = np.divide(errors, trials, out=np.zeros(trials.size), where=counted)
    resampled = bootstrap.per_identity_rate(own * counted, counted)
    figure = {
        "rate": float(own[counted].mean()) if counted.any() else None,
        "people": int(counted.sum()),
        "people_with_errors": int((errors[counted] > 0).sum()),
        "ci95_bootstrap": _interval(resampled) if counted.any() else None,
    }
    return figure, resampled


def _per_identity_count(first: np.ndarray, second: np.ndarray, identities: int) -> np.ndarray:
    """How many of the pairs ``(first[k], second[k])`` each identity is in."""
    return np.bincount(first, minlength=identities) + np.bincount(second, minlength=identities)


def _worst_to_best(by_group: Mapping[str, dict], name: str, resampled: Mapping[str, np.ndarray]) -> dict | None:
    """Worst/best ratio of one rate across groups, with the bootstrap interval of that ratio (same two groups)."""
    rates = {group: figures[name]["rate"] for group, figures in by_group.items() if figures.get(name) and figures[name]["rate"] is not None}
    if len(rates) < 2:
        return None
    comparison = metrics.error_ratio(rates)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = resampled[comparison.worst_group] / resampled[comparison.best_group]
    return {
        "worst_group": comparison.worst_group, "worst": comparison.worst,
        "best_group": comparison.best_group, "best": comparison.best,
        "ratio": comparison.ratio, "ratio_ci95_bootstrap": _interval(ratios),
    }


def _comparisons(by_group: Mapping[str, dict], resampled: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
    """``_worst_to_best`` of each rate in ``resampled`` (rate -> group -> resampled values) that has one."""
    found = {name: _worst_to_best(by_group, name, by_rate) for name, by_rate in resampled.items()}
    return {name: comparison for name, comparison in found.items() if comparison}


def demographic_report(
    identities: Mapping[str, list[Path]],
    groups: Mapping[str, str],
    templates: Mapping[Path, ImageTemplate],
    threshold: float | None = None,
    fmr: float = 1e-3,
    resamples: int = 1000,
    seed: int = 0,
    max_photos_per_person: int = MAX_PHOTOS_PER_PERSON,
    offsets: Mapping[Path, float] | None = None,
) -> tuple[dict, dict[str, metrics.RocCurve], Impostors]:
    """The differentials report (JSON-ready; keys in docs/evaluation.md), the DET curves per group (plus "all") and
    the impostor distances (for calibration tables). ``offsets`` normalizes the distances (module docstring)."""
    data, unlabelled = labelled_set(identities, groups, templates, offsets)
    scores = score_pairs(data)
    everyone = scores.all_impostors()
    threshold, rule = (threshold, "given") if threshold is not None else threshold_at_fmr(scores, fmr)
    bootstrap = IdentityBootstrap(data.identity_group, resamples, seed)
    verification, overall = _verification(data, scores, threshold, bootstrap)
    overall["fnmr_at_fmr"] = _fnmr_at_fmr(data, scores, everyone)
    capped, _ = labelled_set(cap_photographs({name: identities[name] for name in data.identities}, max_photos_per_person, seed),
                             groups, templates, offsets)
    capped_verification, capped_overall = _verification(capped, score_pairs(capped), threshold, bootstrap)
    report = {
        "protocol": "demographics",
        "identities": len(data.identities),
        "images": len(data.paths),
        "unlabelled_identities_left_out": len(unlabelled),
        "threshold": {"value": float(threshold), "rule": rule},
        "confidence_intervals": {
            "level": CONFIDENCE,
            "ci95_bootstrap": f"percentile bootstrap over identities, resampled within each group ({resamples} resamples, seed {seed})",
            "ci95_wilson": "Wilson score interval treating every comparison as independent (narrower than the truth)",
        },
        "weighting": {
            "pair_weighted": "errors over all the pairs (or searches) of the group: people with many photographs weigh more",
            "identity_weighted": "each person's own rate over their own pairs (or searches), averaged over the people who "
                                 "have at least one: every person counts once; the published comparison between groups",
        },
        "overall": overall,
        "verification": verification,
        "capped": {
            "max_photos_per_person": max_photos_per_person,
            "rule": f"at most {max_photos_per_person} photographs of each person, drawn at random (seed {seed}), at the same threshold",
            "images": len(capped.paths),
            "overall": capped_overall,
            "verification": capped_verification,
        },
        "identification": _identification(identities, data, templates, threshold, bootstrap, offsets),
        "enrolment": failure_summary(templates[p] for p in data.paths),
    }
    group_of = data.identity_group
    curves = {"all": metrics.roc_curve(scores.genuine, everyone)}
    for g, name in enumerate(data.groups):
        genuine = scores.genuine[group_of[scores.genuine_identity] == g]
        if genuine.size and scores.impostor[(g, g)].size:
            curves[name] = metrics.roc_curve(genuine, scores.impostor[(g, g)].astype(np.float64))
    within = {name: scores.impostor.get((g, g), np.empty(0, np.float32)).astype(np.float64) for g, name in enumerate(data.groups)}
    return report, curves, Impostors(everyone, within)


def _verification(data: LabelledSet, scores: PairScores, threshold: float, bootstrap: IdentityBootstrap) -> tuple[dict, dict]:
    """FNMR and FMR per group, pair- and identity-weighted, FMR between groups and the worst/best ratios; and the
    same over everybody."""
    n = len(data.identities)
    images = data.images_per_identity
    group_of = data.identity_group
    genuine_trials = images * (images - 1) // 2
    genuine_errors = np.bincount(scores.genuine_identity[scores.genuine > threshold], minlength=n)
    first, second = impostor_matches(data, threshold)
    members = [group_of == g for g in range(len(data.groups))]
    by_group: dict[str, dict] = {}
    resampled: dict[str, dict[str, np.ndarray]] = {name: {} for name in ("fnmr", "fmr", "fnmr_identity_weighted", "fmr_identity_weighted")}
    for g, name in enumerate(data.groups):
        in_group = members[g]
        within = (group_of[first] == g) & (group_of[second] == g)
        own_false_matches = _per_identity_count(first[within], second[within], n)
        own_impostor_pairs = images * (images[in_group].sum() - images)
        resampled["fnmr"][name] = bootstrap.per_identity_rate(genuine_errors * in_group, genuine_trials * in_group)
        resampled["fmr"][name] = bootstrap.pair_rate(first[within], second[within], images, np.flatnonzero(in_group))
        fnmr_people, resampled["fnmr_identity_weighted"][name] = _per_person(genuine_errors, genuine_trials, in_group, bootstrap)
        fmr_people, resampled["fmr_identity_weighted"][name] = _per_person(own_false_matches, own_impostor_pairs, in_group, bootstrap)
        prolific = int(np.argmax(np.where(in_group, genuine_trials, -1)))
        by_group[name] = {
            "identities": int(in_group.sum()),
            "images": int(images[in_group].sum()),
            "fnmr": _rate(int(genuine_errors[in_group].sum()), int(genuine_trials[in_group].sum()), resampled["fnmr"][name]),
            "fmr": _rate(int(within.sum()), int(scores.impostor[(g, g)].size), resampled["fmr"][name]),
            "fnmr_identity_weighted": fnmr_people,
            "fmr_identity_weighted": fmr_people,
            "most_genuine_pairs": {
                "identity": data.identities[prolific],
                "images": int(images[prolific]),
                "genuine_pairs": int(genuine_trials[prolific]),
                "of_the_group": int(genuine_trials[in_group].sum()),
                "fnmr": float(genuine_errors[prolific] / genuine_trials[prolific]) if genuine_trials[prolific] else None,
            },
        }
    cross = {}
    for (g, h), distances in scores.impostor.items():
        if g != h:
            between = ((group_of[first] == g) & (group_of[second] == h)) | ((group_of[first] == h) & (group_of[second] == g))
            interval = bootstrap.pair_rate(first[between], second[between], images, np.flatnonzero(members[g]), np.flatnonzero(members[h]))
            cross[data.groups[g] + CROSS + data.groups[h]] = {"fmr": _rate(int(between.sum()), int(distances.size), interval)}
    everybody = np.ones(n, dtype=bool)
    impostor_pairs = sum(int(distances.size) for distances in scores.impostor.values())
    overall = {
        "fnmr": _rate(int(genuine_errors.sum()), int(genuine_trials.sum()), bootstrap.per_identity_rate(genuine_errors, genuine_trials)),
        "fmr": _rate(int(first.size), impostor_pairs, bootstrap.pair_rate(first, second, images, np.arange(n))),
        "fnmr_identity_weighted": _per_person(genuine_errors, genuine_trials, everybody, bootstrap)[0],
        "fmr_identity_weighted": _per_person(_per_identity_count(first, second, n), images * (images.sum() - images), everybody, bootstrap)[0],
    }
    return {"by_group": by_group, "cross_group": cross, "worst_to_best": _comparisons(by_group, resampled)}, overall


def _fnmr_at_fmr(data: LabelledSet, scores: PairScores, impostors: np.ndarray) -> dict:
    """The overall FNMR, pair- and identity-weighted, at each of FMR_POINTS over every impostor pair, with how many
    false matches that is and whether there are enough impostor pairs (1/FMR) to resolve it."""
    images = data.images_per_identity
    trials = images * (images - 1) // 2
    counted = trials > 0
    found = {}
    for fmr, point in zip(FMR_POINTS, metrics.tar_at_fars(scores.genuine, impostors, FMR_POINTS)):
        errors = np.bincount(scores.genuine_identity[scores.genuine > point.threshold], minlength=images.size)
        found[f"{fmr:g}"] = {
            "threshold": point.threshold,
            "fnmr": 1.0 - point.tar,
            "fnmr_identity_weighted": float((errors[counted] / trials[counted]).mean()),
            "fmr_actual": point.far_actual,
            "false_matches": int(round(point.far_actual * impostors.size)),
            "impostor_pairs": int(impostors.size),
            "resolvable": bool(impostors.size >= math.ceil(1 / fmr)),
        }
    return found


def _identification(identities: Mapping[str, list[Path]], data: LabelledSet, templates: Mapping[Path, ImageTemplate],
                    threshold: float, bootstrap: IdentityBootstrap, offsets: Mapping[Path, float] | None) -> dict:
    """FNIR at rank 1 (pair- and identity-weighted) and FPIR per group at the global threshold (the split of
    ``identification.split_identities``; an unmated search is a person with one photograph, so FPIR counts every
    person once already)."""
    split = split_identities({name: identities[name] for name in data.identities}, gallery_per_subject=1)
    ranks, mate_distances, top1 = search_all(split, templates, candidate_list_length=1, offsets=offsets)
    index = {name: k for k, name in enumerate(data.identities)}
    n = len(data.identities)
    mated_owner = np.array([index[name] for name, _ in split.mated], dtype=np.int64)
    unmated_owner = np.array([index[name] for name, _ in split.unmated], dtype=np.int64)
    misses = np.bincount(mated_owner[mate_distances > threshold], minlength=n)
    mated = np.bincount(mated_owner, minlength=n)
    false_positives = np.bincount(unmated_owner[top1 <= threshold], minlength=n)
    unmated = np.bincount(unmated_owner, minlength=n)
    by_group = {}
    resampled: dict[str, dict[str, np.ndarray]] = {name: {} for name in ("fnir_rank_1", "fpir", "fnir_rank_1_identity_weighted")}
    for g, name in enumerate(data.groups):
        in_group = data.identity_group == g
        resampled["fnir_rank_1"][name] = bootstrap.per_identity_rate(misses * in_group, mated * in_group)
        resampled["fpir"][name] = bootstrap.per_identity_rate(false_positives * in_group, unmated * in_group)
        people, resampled["fnir_rank_1_identity_weighted"][name] = _per_person(misses, mated, in_group, bootstrap)
        by_group[name] = {
            "fnir_rank_1": _rate(int(misses[in_group].sum()), int(mated[in_group].sum()), resampled["fnir_rank_1"][name]),
            "fpir": _rate(int(false_positives[in_group].sum()), int(unmated[in_group].sum()), resampled["fpir"][name]),
            "fnir_rank_1_identity_weighted": people,
        }
    return {
        "gallery_subjects": len(split.gallery),
        "mated_searches": len(split.mated),
        "unmated_searches": len(split.unmated),
        "unmated_rule": split.unmated_rule,
        "by_group": by_group,
        "worst_to_best": _comparisons(by_group, resampled),
    }
