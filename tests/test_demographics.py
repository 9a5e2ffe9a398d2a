"""Demographic differentials, error-versus-discard and the template cache: known answers on constructed templates."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from facetrail.evaluation import demographics, edc
from facetrail.evaluation.demographics import IdentityBootstrap, demographic_report, labelled_set, score_pairs
from facetrail.evaluation.templates import ImageTemplate
from tests.fixtures.demographics import labelled_people


def test_every_pair_is_scored_once_in_blocks_as_brute_force_finds(monkeypatch):
    rng = np.random.default_rng(3)
    points = {f"p{k}": [tuple(rng.normal(size=4) + k % 3) for _ in range(rng.integers(1, 5))] for k in range(12)}
    points["p5"][0] = None
    identities, templates = labelled_people(points)
    groups = {name: ("a" if k % 2 else "b") for k, name in enumerate(sorted(identities))}
    data, unlabelled = labelled_set(identities, groups, templates)
    scores = score_pairs(data, block_rows=3)  # several blocks, some rows split across them
    expected_genuine, expected_impostor = [], {}
    flat = [(name, path) for name in sorted(identities) for path in identities[name]]
    for (n1, p1), (n2, p2) in itertools.combinations(flat, 2):
        t1, t2 = templates[p1], templates[p2]
        d = np.inf if t1.failed or t2.failed else float(np.linalg.norm(t1.embedding - t2.embedding))
        if n1 == n2:
            expected_genuine.append(d)
        else:
            key = tuple(sorted((data.groups.index(groups[n1]), data.groups.index(groups[n2]))))
            expected_impostor.setdefault(key, []).append(d)
    assert unlabelled == []
    np.testing.assert_allclose(np.sort(scores.genuine), np.sort(expected_genuine), rtol=1e-5)
    assert set(scores.impostor) == set(expected_impostor)
    for key, distances in expected_impostor.items():
        np.testing.assert_allclose(np.sort(scores.impostor[key]), np.sort(distances), rtol=1e-5)


def test_rates_per_group_at_one_threshold_match_hand_counts():
    # Group "a": Ann and Amy are close (2 of their 4 impostor pairs match at 0.5); Ann's own two images are 0.4
    # apart (a match), Amy's 0.9 apart (a false non-match). Group "b": Bob and Ben are far from everybody; Bob has
    # one image that failed to enrol, so his genuine pair is an error too.
    identities, templates = labelled_people({
        "Ann": [(0.0, 0.0), (0.4, 0.0)],
        "Amy": [(0.0, 0.2), (0.0, 1.1)],
        "Bob": [(10.0, 0.0), None],
        "Ben": [(0.0, 10.0), (0.0, 10.2)],
        "Bea": [(20.0, 20.0)],  # one image: an unmated search in identification
        "Nob": [(5.0, 5.0)],  # no group label: left out
    })
    groups = {"Ann": "a", "Amy": "a", "Bob": "b", "Ben": "b", "Bea": "b"}
    report, curves, found = demographic_report(identities, groups, templates, threshold=0.5, resamples=50)
    impostors = found.everyone
    a, b = (report["verification"]["by_group"][g] for g in ("a", "b"))
    # Ann-Amy impostor pairs: (0,0)-(0,.2)=.2 ✓, (0,0)-(0,1.1)=1.1, (.4,0)-(0,.2)=.45 ✓, (.4,0)-(0,1.1)=1.17
    assert (a["fmr"]["errors"], a["fmr"]["trials"]) == (2, 4)
    assert (a["fnmr"]["errors"], a["fnmr"]["trials"]) == (1, 2)
    assert (b["fmr"]["errors"], b["fmr"]["trials"]) == (0, 2 * 2 + 2 + 2)
    assert (b["fnmr"]["errors"], b["fnmr"]["trials"]) == (1, 2)
    assert report["verification"]["cross_group"]["a × b"]["fmr"]["trials"] == 4 * 5
    assert report["unlabelled_identities_left_out"] == 1 and report["images"] == 9
    assert report["threshold"] == {"value": 0.5, "rule": "given"}
    assert report["verification"]["worst_to_best"]["fmr"]["worst_group"] == "a"
    assert report["verification"]["worst_to_best"]["fmr"]["ratio"] == np.inf  # b made no false match
    assert impostors.size == 4 + 8 + 20 and np.isinf(impostors).sum() == 7  # the failed image, with the 7 others
    assert set(curves) == {"all", "a", "b"}
    # identification: first image enrolled, second searched; Amy's second image finds her own first at 0.9 (rank 1
    # but beyond 0.5): a miss; Ann's is found at 0.4; Bob's failed probe is a miss.
    by_group = report["identification"]["by_group"]
    assert (by_group["a"]["fnir_rank_1"]["errors"], by_group["a"]["fnir_rank_1"]["trials"]) == (1, 2)
    assert (by_group["b"]["fnir_rank_1"]["errors"], by_group["b"]["fnir_rank_1"]["trials"]) == (1, 2)
    assert (by_group["b"]["fpir"]["errors"], by_group["b"]["fpir"]["trials"]) == (0, 1)  # Bea is far from everybody


def test_threshold_from_the_target_false_match_rate_over_all_impostors():
    rng = np.random.default_rng(0)
    identities, templates = labelled_people({f"p{k}": [tuple(rng.normal(size=3)) for _ in range(3)] for k in range(20)})
    groups = dict.fromkeys(identities, "everyone")
    report, _, found = demographic_report(identities, groups, templates, fmr=0.05, resamples=20)
    impostors = found.everyone
    threshold = report["threshold"]["value"]
    assert np.mean(impostors <= threshold) <= 0.05 < np.mean(impostors <= np.nextafter(np.sort(impostors)[np.sum(impostors <= threshold)], np.inf))
    assert report["overall"]["fmr"]["errors"] == int(np.sum(impostors <= threshold))


def test_identity_bootstrap_resamples_within_groups_and_reproduces_the_point_estimate():
    identity_group = np.array([0, 0, 0, 1, 1])
    bootstrap = IdentityBootstrap(identity_group, resamples=200, seed=1)
    assert (bootstrap.weights[:, :3].sum(axis=1) == 3).all() and (bootstrap.weights[:, 3:].sum(axis=1) == 2).all()
    bootstrap.weights = np.ones((1, 5), dtype=np.float32)  # the sample itself
    errors, trials = np.array([1, 0, 2, 0, 0]), np.array([3, 1, 3, 6, 0])
    assert bootstrap.per_identity_rate(errors, trials)[0] == pytest.approx(3 / 13)
    images = np.array([2, 1, 3, 2, 2])
    group = np.array([0, 1, 2])
    # impostor pairs within group 0: 2*1 + 2*3 + 1*3 = 11; false matches between identities 0-2 (twice) and 1-2
    assert bootstrap.pair_rate(np.array([0, 0, 1]), np.array([2, 2, 2]), images, group)[0] == pytest.approx(3 / 11)
    assert bootstrap.pair_rate(np.array([0]), np.array([3]), images, group, np.array([3, 4]))[0] == pytest.approx(1 / (6 * 4))


def test_edc_discards_the_lowest_quality_pairs_first():
    errors = np.array([True, False, False, True, False])
    quality = np.array([0.0, 3.0, 2.0, 1.0, 4.0])
    curve = edc.edc_curve(errors, quality, np.array([0.0, 0.2, 0.4, 0.6]))
    np.testing.assert_allclose(curve, [2 / 5, 1 / 4, 0 / 3, 0 / 2])
    assert edc.utility("yaw_deg", np.array([-30.0, 10.0])).tolist() == [-30.0, -10.0]
    assert edc.utility("brightness", np.array([27.5, 227.5, 127.5])).tolist() == [-100.0, -100.0, 0.0]


def test_edc_report_tells_a_predictive_component_from_noise():
    rng = np.random.default_rng(5)
    n = 4000
    sharp = rng.uniform(0, 100, size=(2, n))
    distances = np.where(np.minimum(*sharp) < 5, 0.7, 0.5) + 0.05 * rng.random(n)  # only blurred pairs fail
    noise = rng.uniform(0, 100, size=(2, n))
    report, curves, fractions = edc.edc_report(distances, {"sharpness": tuple(sharp), "contrast": tuple(noise)}, 0.6)
    assert report["components"]["sharpness"]["predicts_errors"] and report["components"]["sharpness"]["area_ratio"] < 0.5
    assert not report["components"]["contrast"]["predicts_errors"]
    assert curves["sharpness"][0] == pytest.approx(np.mean(distances > 0.6)) and fractions[-1] == edc.MAX_DISCARD
    gate = report["components"]["sharpness"]["suggested_threshold"]
    assert np.mean(np.minimum(*sharp) < gate) <= edc.GATE_DISCARD + 1e-9


def test_distance_blocks_give_infinite_distance_for_failed_templates():
    embeddings = np.array([[0.0, 0.0], [3.0, 4.0], [np.nan, np.nan]])
    (start, block), = list(demographics.distance_blocks(embeddings, block_rows=8))
    assert start == 0 and block[0, 1] == pytest.approx(5.0) and np.isinf(block[0, 2]) and np.isinf(block[1, 2])


def test_template_cache_keeps_templates_per_file_version_and_pipeline(tmp_path):
    from facetrail.errors import FacetrailError
    from facetrail.evaluation.templates import TemplateCache

    photo, missing = tmp_path / "a.jpg", tmp_path / "gone.jpg"
    photo.write_bytes(b"first version")
    pipeline = {"model": "m", "face_choice": "centre"}
    cache = TemplateCache(tmp_path / "cache.npz", pipeline)
    quality = (90.0, 30.0, 20.0, 120.0, 40.0, -5.0, 2.0, float("nan"))  # QUALITY_COMPONENTS; no detector score
    cache.put(ImageTemplate(photo, np.array([0.5, -1.0], dtype=np.float32), "", "hog", 2, quality))
    cache.put(ImageTemplate(missing, None, "cannot read"))  # a file that is not there is not cached
    cache.save()
    again = TemplateCache(tmp_path / "cache.npz", pipeline)
    assert len(again) == 1
    found = again.get(photo)
    assert found.embedding.tolist() == [0.5, -1.0] and found.faces == 2 and found.detector == "hog"
    np.testing.assert_array_equal(found.quality, quality)
    photo.write_bytes(b"second version, longer")  # the photograph changed: its template must be computed again
    assert again.get(photo) is None and again.get(missing) is None
    with pytest.raises(FacetrailError, match="another pipeline"):
        TemplateCache(tmp_path / "cache.npz", {**pipeline, "model": "other"})
    (tmp_path / "junk.npz").write_bytes(b"not numpy")
    with pytest.raises(FacetrailError, match="not a facetrail template cache"):
        TemplateCache(tmp_path / "junk.npz", pipeline)
