"""Issue 19's measurements on constructed data with hand-checkable answers: identity- against pair-weighted rates,
fair score normalization, the rule for adopting it, and identification projected to large galleries."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facetrail.engine import score_normalization
from facetrail.evaluation.demographics import cap_photographs, demographic_report
from facetrail.evaluation.normalization import adoption
from facetrail.evaluation.projection import project
from facetrail.evaluation.published import differences
from tests.fixtures.demographics import labelled_people


def test_one_prolific_person_dominates_pair_weighted_rates_but_counts_once_identity_weighted():
    # Group "a": Pat has 10 photographs, all 0.1 apart (45 genuine pairs, no miss); Al, Ava and Abe have 2 each, 0.9
    # apart (a miss each). Group "b": four people with 2 photographs, one of them 0.9 apart. People sit 100 apart.
    points = {"Pat": [(0.0, 0.01 * k) for k in range(10)]}
    points |= {name: [(100.0 * (k + 1), 0.0), (100.0 * (k + 1), 0.9)] for k, name in enumerate(("Al", "Ava", "Abe"))}
    points |= {name: [(0.0, 100.0 * (k + 1)), (0.9 if k == 0 else 0.1, 100.0 * (k + 1))] for k, name in enumerate(("Bo", "Bea", "Ben", "Bob"))}
    identities, templates = labelled_people(points)
    groups = {name: "a" if name.startswith(("P", "A")) else "b" for name in identities}
    report, _, _ = demographic_report(identities, groups, templates, threshold=0.5, resamples=50, max_photos_per_person=3)
    a, b = (report["verification"]["by_group"][g] for g in ("a", "b"))
    assert (a["fnmr"]["errors"], a["fnmr"]["trials"]) == (3, 48) and b["fnmr"]["rate"] == 1 / 4  # pair-weighted: a best
    assert a["fnmr_identity_weighted"]["rate"] == 3 / 4 and b["fnmr_identity_weighted"]["rate"] == 1 / 4  # a worst
    assert (a["fnmr_identity_weighted"]["people"], a["fnmr_identity_weighted"]["people_with_errors"]) == (4, 3)
    assert a["most_genuine_pairs"] == {"identity": "Pat", "images": 10, "genuine_pairs": 45, "of_the_group": 48, "fnmr": 0.0}
    compared = report["verification"]["worst_to_best"]
    assert (compared["fnmr"]["worst_group"], compared["fnmr"]["ratio"]) == ("b", 4.0)
    assert (compared["fnmr_identity_weighted"]["worst_group"], compared["fnmr_identity_weighted"]["ratio"]) == ("a", 3.0)
    # at most 3 photographs each: Pat gives 3 genuine pairs instead of 45, so pairs weigh people more evenly
    capped = report["capped"]["verification"]["by_group"]["a"]
    assert (capped["fnmr"]["errors"], capped["fnmr"]["trials"]) == (3, 6) and report["capped"]["images"] == 3 + 6 + 8
    # what the auditor's page says is judged on people, not pairs
    sentence = {d["rate"]: d for d in differences(report)}["fnmr_identity_weighted"]["sentence"]
    assert sentence.startswith("Large difference in the false non-match rate: for a, two photographs") and "3.0 times" in sentence


def test_each_persons_own_false_match_rate_is_averaged_over_people():
    # One group: Ann and Amy (one photograph each) match each other; Cal's two photographs match nobody.
    # Pairs: Ann-Amy (a false match), Ann-Cal ×2, Amy-Cal ×2: pair-weighted 1/5; own rates 1/3, 1/3, 0/4.
    identities, templates = labelled_people({"Ann": [(0.0, 0.0)], "Amy": [(0.0, 0.2)], "Cal": [(5.0, 0.0), (5.0, 0.1)]})
    report, _, _ = demographic_report(identities, dict.fromkeys(identities, "g"), templates, threshold=0.5, resamples=50)
    group = report["verification"]["by_group"]["g"]
    assert group["fmr"]["rate"] == pytest.approx(1 / 5)
    assert group["fmr_identity_weighted"]["rate"] == pytest.approx(2 / 9) and group["fmr_identity_weighted"]["people"] == 3
    assert report["overall"]["fmr_identity_weighted"]["rate"] == pytest.approx(2 / 9)


def test_the_fnmr_at_each_false_match_rate_says_how_many_impostor_pairs_resolve_it():
    rng = np.random.default_rng(2)
    identities, templates = labelled_people({f"p{k}": [tuple(rng.normal(size=3)) for _ in range(3)] for k in range(30)})
    report, _, found = demographic_report(identities, dict.fromkeys(identities, "g"), templates, resamples=20)
    impostors = found.everyone
    points = report["overall"]["fnmr_at_fmr"]
    assert list(points) == ["0.001", "0.0001", "1e-05"] and impostors.size == 3_915
    assert points["0.001"]["resolvable"] and not points["0.0001"]["resolvable"]
    assert points["0.001"]["false_matches"] == int(np.sum(impostors <= points["0.001"]["threshold"])) <= 3
    assert points["0.001"]["threshold"] == report["threshold"]["value"]


def test_photographs_are_capped_at_random_but_reproducibly():
    identities = {"many": [f"m{k}" for k in range(20)], "few": ["f0", "f1"]}
    capped = cap_photographs(identities, 5, seed=1)
    assert capped["few"] == ["f0", "f1"] and len(set(capped["many"])) == 5 and capped == cap_photographs(identities, 5, seed=1)
    assert capped["many"] == sorted(capped["many"], key=identities["many"].index)
    with pytest.raises(ValueError):
        cap_photographs(identities, 1)


def test_reports_made_before_identity_weighting_are_judged_on_their_pair_weighted_rates():
    old = {"verification": {"worst_to_best": {"fnmr": {"worst_group": "f", "worst": 0.1, "best_group": "m", "best": 0.02,
                                                       "ratio": 5.0, "ratio_ci95_bootstrap": [2.2, 9.9]}}}}
    assert [d["rate"] for d in differences(old)] == ["fnmr"]


def _two_clusters(rng: np.random.Generator, people: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two photographs each of ``people`` people in two far-apart clusters: in cluster 0 faces resemble each other
    (spread 0.5), in cluster 1 they do not (spread 1.5). Templates, identity and cluster per template."""
    cluster = np.repeat(np.arange(people) % 2, 2)
    identity = np.repeat(np.arange(people), 2)
    centres = np.where(cluster[:, None] == 0, 0.0, 50.0) + np.repeat(rng.normal(size=(people, 4)), 2, axis=0) * np.where(cluster == 0, 0.5, 1.5)[:, None]
    return centres + 0.05 * rng.normal(size=centres.shape), identity, cluster


def _within_cluster_fmrs(distances: np.ndarray, identity: np.ndarray, cluster: np.ndarray, fmr: float) -> list[float]:
    """Each cluster's FMR over its own impostor pairs at the threshold where the FMR over all impostor pairs is ``fmr``."""
    upper = np.triu(np.ones_like(distances, dtype=bool), 1)
    impostor = upper & (identity[:, None] != identity[None, :])
    threshold = np.sort(distances[impostor])[int(fmr * impostor.sum()) - 1]
    return [float(np.mean(distances[impostor & (cluster[:, None] == c) & (cluster[None, :] == c)] <= threshold)) for c in (0, 1)]


def test_fair_score_normalization_brings_the_clusters_false_match_rates_together():
    templates, identity, cluster = _two_clusters(np.random.default_rng(4))
    distances = np.linalg.norm(templates[:, None] - templates[None, :], axis=2)
    fitted = score_normalization.fit(templates, identity, fmr=0.02, clusters=2, seed=0)
    assert sorted(np.bincount(score_normalization.nearest_centroid(templates, fitted.centroids))) == [60, 60]
    tight, loose = fitted.template_offsets(templates[1:3])  # cluster 0's second photograph, cluster 1's first
    assert tight < loose  # the look-alike cluster's distances grow against the other's
    before = _within_cluster_fmrs(distances, identity, cluster, 0.02)
    after = _within_cluster_fmrs(fitted.apply(distances, templates, templates), identity, cluster, 0.02)
    assert before[0] > 5 * before[1] and max(after) / min(after) < before[0] / before[1] / 2
    again = score_normalization.FairScoreNormalization.from_json(fitted.to_json())
    np.testing.assert_allclose(again.apply(distances[:3, :5], templates[:3], templates[:5]),
                               distances[:3, :5] - (fitted.template_offsets(templates[:3])[:, None] + fitted.template_offsets(templates[:5])[None, :]) / 2)
    assert fitted.template_offsets(np.full((1, 4), np.nan)).tolist() == [0.0]  # a failed template is left as it is
    with pytest.raises(ValueError, match="format"):
        score_normalization.FairScoreNormalization.from_json(json.dumps({"format": "other"}))


def test_a_normalization_is_adopted_only_if_it_passes_every_test():
    def figures(fnmr_ratio, fmr_ratio, fnmr, accuracy):
        return {"ratios": {"fnmr_identity_weighted": {"ratio": fnmr_ratio}, "fmr_identity_weighted": {"ratio": fmr_ratio}},
                "fnmr_at_fmr_0.001": fnmr, "accuracy_kfold": {"mean": accuracy}}

    before = figures(1.5, 1.2, 0.02, 0.99)
    assert adoption(before, figures(1.1, 1.1, 0.02, 0.99))["adopt"]
    verdict = adoption(before, figures(1.0, 3.8, 0.015, 0.9898))
    assert not verdict["adopt"] and [passed for passed in verdict["tests"].values()] == [True, False, True, False]
    assert not adoption(before, figures(None, 1.0, 0.01, 1.0))["adopt"]  # a ratio with no error in the best group


def test_projection_agrees_with_brute_force_searches_of_random_galleries():
    rng = np.random.default_rng(7)
    impostors = rng.normal(1.0, 0.15, size=20_000)
    mates = rng.normal(0.6, 0.15, size=400)
    gallery, threshold, searches = 30, 0.7, 4_000
    projected = project(mates, impostors, threshold, [gallery])["by_gallery_size"][0]["as_measured"]
    # mated searches: the mate against gallery - 1 impostors drawn from the same distribution
    probe = rng.integers(0, mates.size, size=searches)
    others = rng.choice(impostors, size=(searches, gallery - 1))
    first = mates[probe] < others.min(axis=1)
    assert projected["rank_1"] == pytest.approx(first.mean(), abs=0.02)
    assert projected["fnir"] == pytest.approx(1 - (first & (mates[probe] <= threshold)).mean(), abs=0.02)
    # unmated searches: the nearest of ``gallery`` impostors within the threshold
    assert projected["fpir"] == pytest.approx((rng.choice(impostors, size=(searches, gallery)).min(axis=1) <= threshold).mean(), abs=0.02)


def test_projection_beyond_the_impostors_resolution_gives_both_ends():
    impostors = np.linspace(1.0, 2.0, 1_000)
    report = project(np.array([0.2, 0.4, np.inf]), impostors, 0.5, [1, 10_000])
    assert report["mates_closer_than_every_impostor"] == pytest.approx(2 / 3) and report["fmr_at_threshold"] == 0.0
    alone, large = report["by_gallery_size"]
    assert alone["as_measured"]["rank_1"] == pytest.approx(2 / 3)  # the failed probe (+inf) never comes first
    assert large["as_measured"]["rank_1"] == pytest.approx(2 / 3) and large["as_measured"]["fpir"] == 0.0
    assert large["rule_of_three"]["rank_1"] == pytest.approx(2 / 3 * (1 - 3 / 1_000) ** 9_999)
    assert large["rule_of_three"]["fpir"] == pytest.approx(1 - (1 - 3 / 1_000) ** 10_000)


def test_the_shipped_figures_carry_the_models_limits_and_the_normalizations_verdict(tmp_path):
    from facetrail.datadir import DataDir
    from facetrail.evaluation.published import model_limits_sentence, published_figures

    shipped, = published_figures(DataDir(tmp_path), "dlib-resnet-v1")  # no figures of this installation's own
    assert shipped["origin"] == "facetrail" and shipped["dataset"] == "lfw-dev"
    assert [d["rate"] for d in shipped["differences"]] == ["fnmr_identity_weighted", "fmr_identity_weighted",
                                                           "fnir_rank_1_identity_weighted", "fpir"]
    limits = shipped["model_limits"]
    assert list(limits["fnmr_at_fmr"]) == ["0.001", "0.0001", "1e-05"]
    assert [row["gallery_size"] for row in limits["projection"]["by_gallery_size"]] == [1_000_000, 10_000_000]
    normalization = shipped["score_normalization"]
    assert normalization["adopt"] is False and set(normalization) >= {"before", "after", "tests", "method", "measured"}
    sentence = model_limits_sentence(DataDir(tmp_path), "dlib-resnet-v1")
    assert sentence.startswith("On labelled photographs (lfw-dev), this model misses ") and "gallery of 10,000,000 people" in sentence
    assert model_limits_sentence(DataDir(tmp_path), "another-model") is None


def test_the_normalization_switch_is_off_by_default_and_checked():
    from facetrail.config import Settings, settings_from_dict
    from facetrail.errors import ConfigError

    assert Settings().embedding.score_normalization == "none"  # it did not pass the adoption rule (docs/evaluation.md)
    assert settings_from_dict({"embedding": {"score_normalization": "fsn"}}).engine.embedding.score_normalization == "fsn"
    with pytest.raises(ConfigError, match="embedding.score_normalization"):
        settings_from_dict({"embedding": {"score_normalization": "z-norm"}})
