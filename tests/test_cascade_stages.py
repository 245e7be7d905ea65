"""The cascade's stand-alone stages: calibration, fusion and post-rank, on synthetic data."""

import numpy as np
import pytest
import torch

from genrec.cascade.calibrate import (
    IsotonicCalibrator,
    UMCCalibrator,
    UMCConfig,
    expected_calibration_error,
    pcoc,
)
from genrec.cascade.fuse import (
    AUCEnsembleFusion,
    FixedWeightFusion,
    FusionConfig,
    PersonalizedWeightFusion,
    soft_grouped_auc,
)
from genrec.cascade.rerank import cap_origin_share, mmr_rerank
from genrec.eval.metrics import gauc


def _miscalibrated(n=4000, seed=0):
    """Raw scores that are monotone in the truth but badly over-confident."""
    rng = np.random.default_rng(seed)
    truth = rng.beta(1, 8, n)
    y = (rng.random(n) < truth).astype(float)
    raw = np.sqrt(truth)  # monotone distortion: predicts far too high
    return raw, y


@pytest.fixture(scope="module")
def fitted_calibrators():
    raw, y = _miscalibrated()
    return raw, y, {"umc": UMCCalibrator(UMCConfig(epochs=120)).fit(raw, y), "isotonic": IsotonicCalibrator().fit(raw, y)}


@pytest.mark.parametrize("name", ["umc", "isotonic"])
def test_calibrator_maps_sorted_inputs_to_sorted_outputs(fitted_calibrators, name):
    _, _, calibrators = fitted_calibrators
    x = np.sort(np.random.default_rng(1).random(5000))
    out = calibrators[name].predict(x)
    assert np.all(np.diff(out) >= 0)


def test_umc_is_strictly_increasing_even_outside_the_training_range(fitted_calibrators):
    _, _, calibrators = fitted_calibrators
    x = np.sort(np.r_[np.linspace(1e-5, 1 - 1e-5, 3000), np.random.default_rng(2).random(2000)])
    x = np.unique(x)
    out = calibrators["umc"].predict(x)
    assert np.all(np.diff(out) > 0)


@pytest.mark.parametrize("name", ["umc", "isotonic"])
def test_calibration_never_reverses_two_candidates_of_a_request(fitted_calibrators, name):
    _, _, calibrators = fitted_calibrators
    rng = np.random.default_rng(3)
    for _ in range(50):
        raw = rng.random(30)
        out = calibrators[name].predict(raw)
        higher = raw[:, None] > raw[None, :]
        assert not np.any(higher & (out[:, None] < out[None, :]))


@pytest.mark.parametrize("name", ["umc", "isotonic"])
def test_calibrators_reduce_expected_calibration_error(fitted_calibrators, name):
    raw, y, calibrators = fitted_calibrators
    held_raw, held_y = _miscalibrated(seed=9)
    before = expected_calibration_error(held_raw, held_y)
    after = expected_calibration_error(calibrators[name].predict(held_raw), held_y)
    assert after < before / 3
    assert abs(pcoc(calibrators[name].predict(held_raw), held_y) - 1) < 0.15


def test_calibrator_rejects_scores_outside_zero_one():
    with pytest.raises(ValueError, match="p must be probabilities"):
        UMCCalibrator().fit(np.array([0.2, 1.5]), np.array([0, 1]))


def test_umc_state_round_trip_gives_the_same_predictions(fitted_calibrators):
    _, _, calibrators = fitted_calibrators
    umc = calibrators["umc"]
    copy = UMCCalibrator.from_state_dict(umc.state_dict(), umc.config)
    x = np.linspace(0.01, 0.99, 50)
    np.testing.assert_allclose(copy.predict(x), umc.predict(x))


# ---------- fusion ----------


def _fusion_task(n_groups=300, rows=12, seed=0):
    """Two user types: for one the order signal lives in task 2, for the other in task 0."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), rows)
    kind = rng.integers(0, 2, n_groups)
    context = np.stack([kind, 1 - kind], 1).astype(np.float32)[groups]
    relevance = rng.random(len(groups))
    noise = rng.random((len(groups), 3))
    informative = np.where(kind[groups] == 1, 2, 0)
    probs = 0.05 + 0.9 * noise
    probs[np.arange(len(groups)), informative] = 0.05 + 0.9 * relevance
    gains = (relevance > 0.8).astype(np.float32) * 3
    labels = np.stack([gains > 0] * 3, 1).astype(np.float32)
    return probs.astype(np.float32), groups, context, gains, labels


def _ndcg_at(scores, gains, groups, k=5):
    total = []
    for g in np.unique(groups):
        rows = groups == g
        s, r = scores[rows], gains[rows]
        if r.max() == 0:
            continue
        order = np.argsort(-s, kind="stable")[:k]
        ideal = np.sort(r)[::-1][:k]
        disc = 1 / np.log2(np.arange(2, k + 2))
        total.append(((2 ** r[order] - 1) * disc[: len(order)]).sum() / ((2 ** ideal - 1) * disc[: len(ideal)]).sum())
    return float(np.mean(total))


def test_personalized_fusion_beats_a_bad_fixed_weighting():
    probs, groups, context, gains, _ = _fusion_task()
    test = _fusion_task(seed=1)
    bad = FixedWeightFusion((0.0, 1.0, 0.0))  # weight on the pure-noise task
    grade = PersonalizedWeightFusion(FusionConfig(epochs=40), init_weights=(0.3, 0.3, 0.3)).fit(probs, groups, context, gains)
    bad_ndcg = _ndcg_at(bad.score(test[0]), test[3], test[1])
    grade_ndcg = _ndcg_at(grade.score(test[0], test[2]), test[3], test[1])
    assert grade_ndcg > bad_ndcg + 0.2
    weights = grade.weights(np.array([[1, 0], [0, 1]], dtype=np.float32))
    assert weights[0, 2] > weights[0, 0] and weights[1, 0] > weights[1, 2]


def test_auc_ensemble_learns_to_weight_the_informative_task():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(200), 10)
    relevance = rng.random(len(groups))
    labels = (relevance > 0.7).astype(np.float32)
    probs = np.stack([0.05 + 0.9 * rng.random(len(groups)), 0.05 + 0.9 * relevance, 0.05 + 0.9 * rng.random(len(groups))], 1)
    fusion = AUCEnsembleFusion(FusionConfig(epochs=30, task_importance=(1, 1, 1)), init_weights=(1, 0.2, 1)).fit(
        probs, groups, np.stack([labels] * 3, 1),
    )
    assert fusion.weights_[1] > 2 * max(fusion.weights_[0], fusion.weights_[2])
    assert gauc(groups, fusion.score(probs), labels) > 0.9


def test_soft_auc_surrogate_tracks_the_exact_auc():
    rng = np.random.default_rng(0)
    exact, soft = [], []
    for strength in np.linspace(0, 3, 12):
        labels = (rng.random((40, 16)) < 0.3).astype(np.float32)
        scores = strength * labels + rng.normal(size=labels.shape)
        groups = np.repeat(np.arange(40), 16)
        exact.append(gauc(groups, scores.reshape(-1), labels.reshape(-1)))
        soft.append(float(soft_grouped_auc(torch.tensor(scores), torch.tensor(labels), torch.ones(40, 16, dtype=torch.bool), 0.3)))
    assert np.corrcoef(exact, soft)[0, 1] > 0.95


# ---------- post-rank ----------


def test_exposure_cap_holds_on_every_page():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = 60
        ids = np.arange(1, n + 1)
        scores = np.sort(rng.random(n))[::-1]
        is_ai = rng.random(n) < rng.uniform(0.2, 0.9)
        out, out_scores = cap_origin_share(ids, scores, is_ai, k=40, page_size=10, max_share=0.3)
        ai_of = dict(zip(ids, is_ai))
        flags = np.array([ai_of[i] for i in out])
        for page in range(0, len(out), 10):
            assert flags[page:page + 10].sum() <= 3
        assert len(set(out)) == len(out)
        assert np.all(np.diff(out_scores) <= 0)


def test_exposure_cap_keeps_score_order_within_each_origin():
    ids = np.arange(1, 21)
    is_ai = np.array([True] * 10 + [False] * 10)
    out, _ = cap_origin_share(ids, np.linspace(1, 0, 20), is_ai, k=20, page_size=10, max_share=0.5)
    assert list(out[:10]) == [1, 2, 3, 4, 5, 11, 12, 13, 14, 15]


def test_mmr_increases_category_diversity_of_the_top_k():
    rng = np.random.default_rng(0)
    ids = np.arange(1, 101)
    categories = np.repeat(np.arange(10), 10)  # the best items all share one category
    scores = np.sort(rng.random(100))[::-1]
    plain = len(np.unique(categories[:10]))
    out, _ = mmr_rerank(ids, scores, categories, k=10, trade_off=0.5)
    diverse = len(np.unique(categories[out - 1]))
    assert plain == 1 and diverse >= 5
    same, _ = mmr_rerank(ids, scores, categories, k=10, trade_off=1.0)
    assert list(same) == list(ids[:10])
