"""Personal objective weights: the opt-in world variant, GRADE's personal weights, and
HarmonRank's relation-aware ensemble and rank-sum AUC."""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest
import torch

from genrec.cascade.ensemble import EnsembleConfig, RelationAwareEnsemble, soft_rank_auc
from genrec.cascade.fuse import FixedWeightFusion, FusionConfig, PersonalizedWeightFusion, stage_probabilities
from genrec.data.synth import World, WorldConfig, generate_world
from genrec.data.truth import OPTIONAL_ARRAYS, TRUTH_FILE
from genrec.eval.metrics import auc

SMALL = dict(n_items=400, n_users=100, n_events=3_000, seed=3)
DEFAULT_SMALL_WORLD_DIGESTS = {
    True: "974420b34fa2354511cefaaae065f0e4e27f98819d3831a1e6b10e8c8eec1450",
    False: "f0ffb386744ef0ffb42cbb2678ccbb37696f91fc8cb5d9333a8804b97d03df0c",
}
"""`world_digest(generate_world(WorldConfig(**SMALL)))` computed by the generator before personal
objectives existed: the knob's default must leave every table and truth array as they were. Keyed
by whether numpy runs its AVX-512 (SKX) kernels: its vectorised math rounds the last bit differently
from the AVX2 kernels a CPU without AVX-512 gets (an AMD EPYC here), so each kind of CPU generates
its own bit-exact world. The AVX-512 digest was computed before personal objectives existed; the
AVX2 one later, by code whose default path that digest had already pinned."""


def numpy_avx512() -> bool:
    from numpy._core._multiarray_umath import __cpu_features__

    return bool(__cpu_features__.get("AVX512_SKX", False))


def world_digest(world: World) -> str:
    """The content of the tables and of every truth array a world has (file bytes aside)."""
    digest = hashlib.sha256()
    for name in ("items", "users", "events"):
        frame = getattr(world.dataset, name)
        frame = frame.astype({c: str for c in frame.columns if frame[c].dtype == object})
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    for f in fields(world.truth):
        array = np.asarray(getattr(world.truth, f.name))
        if f.name in OPTIONAL_ARRAYS and not array.size:  # a world without them digests as before they existed
            continue
        digest.update(f.name.encode())
        digest.update(str(array.dtype).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


# --- the world ----------------------------------------------------------------------------------


def test_default_world_is_bit_identical_to_the_world_before_personal_objectives(tmp_path):
    world = generate_world(WorldConfig(**SMALL))
    assert world_digest(world) == DEFAULT_SMALL_WORLD_DIGESTS[numpy_avx512()]
    assert not world.truth.has_objectives
    world.save(tmp_path / "data")
    with zipfile.ZipFile(tmp_path / "data" / TRUTH_FILE) as archive:
        assert not {"objective_weight.npy", "item_objective_value.npy"} & set(archive.namelist())
    assert not World.load(tmp_path / "data").truth.has_objectives


@pytest.fixture(scope="module")
def personal_world():
    return generate_world(WorldConfig(n_items=1_500, n_users=1_000, n_events=40_000, seed=1, personal_objectives=2.0))


def test_users_pick_what_they_themselves_value(personal_world):
    """The clicked item (the one choice among the slate) is high in the clicker's own objective."""
    truth, events = personal_world.truth, personal_world.dataset.events
    clicks = events[events["action"] == "click"]
    users = clicks["user_id"].to_numpy() - 1
    values = truth.item_objective_value[clicks["item_id"].to_numpy() - 1]  # [c, 3]
    dominant = truth.objective_weight[users].argmax(1)
    for objective in range(3):
        mine = values[dominant == objective, objective].mean()
        others = values[dominant != objective, objective].mean()
        assert mine > others + 0.3, f"users who value objective {objective} do not pick items high in it"


def test_objective_utility_ranks_by_each_users_own_weights(personal_world):
    truth = personal_world.truth
    np.testing.assert_allclose(truth.objective_weight.sum(1), 1.0)
    users, items = np.arange(5), np.arange(5)
    expected = (truth.objective_weight[users] * truth.item_objective_value[items]).sum(1)
    np.testing.assert_allclose(truth.objective_utility(users, items), expected)
    best = [int(np.argmax(truth.objective_utility(u, np.arange(truth.n_items)))) for u in range(truth.n_users)]
    assert len(set(best)) > 2, "every user's best item is the same: personal weights do not matter"


def test_personal_world_round_trips_with_its_objectives(personal_world, tmp_path):
    personal_world.save(tmp_path / "data")
    loaded = World.load(tmp_path / "data").truth
    np.testing.assert_array_equal(loaded.objective_weight, personal_world.truth.objective_weight)
    np.testing.assert_array_equal(loaded.item_objective_value, personal_world.truth.item_objective_value)


@pytest.mark.parametrize("field,value", [("personal_objectives", -1.0), ("objective_concentration", 0.0)])
def test_objective_knobs_refuse_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        WorldConfig(**{**SMALL, field: value})


def test_no_objectives_means_no_objective_utility():
    with pytest.raises(ValueError, match="personal_objectives"):
        generate_world(WorldConfig(**SMALL)).truth.objective_utility(0, 0)


# --- fusion inputs -------------------------------------------------------------------------------


def test_stage_probabilities_undo_the_nesting():
    nested = np.array([[0.5, 0.25, 0.05], [0.2, 0.2, 0.1]], dtype=np.float32)
    stages = stage_probabilities(nested)
    np.testing.assert_allclose(stages, [[0.5, 0.5, 0.2], [0.2, 1.0, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(np.log(stages).sum(1), np.log(nested[:, 2]), rtol=1e-5)


# --- soft AUC -------------------------------------------------------------------------------------


def test_soft_rank_auc_tends_to_the_exact_auc_with_ties():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(4, 12)), 1)  # rounding makes ties
    labels = rng.random((4, 12)) < 0.4
    mask = np.ones((4, 12), dtype=bool)
    mask[3, 8:] = False
    exact = [auc(scores[g][mask[g]], labels[g][mask[g]]) for g in range(4)]
    soft = soft_rank_auc(torch.tensor(scores), torch.tensor(labels, dtype=torch.float64), torch.tensor(mask), 1e-4)
    np.testing.assert_allclose(soft.numpy(), exact, atol=1e-6)
    warm = soft_rank_auc(torch.tensor(scores), torch.tensor(labels, dtype=torch.float64), torch.tensor(mask), 1.0)
    assert np.nanmax(np.abs(warm.numpy() - exact)) > 0.01  # a real temperature smooths it


def test_soft_rank_auc_marks_one_class_requests_and_keeps_gradients_finite():
    scores = torch.tensor([[0.3, 0.1, 0.2], [0.5, 0.4, 0.1]], requires_grad=True)
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    value = soft_rank_auc(scores, labels, torch.ones(2, 3, dtype=torch.bool))
    assert torch.isnan(value[1]) and not torch.isnan(value[0])
    value[0].backward()
    assert torch.isfinite(scores.grad).all()


# --- personal weights: synthetic requests with a known answer --------------------------------------


def _requests(rng, n_requests: int, items: int, weights: np.ndarray):
    """Three per-objective scores per item; each request's one positive is drawn ∝ exp(3 Σ_t w_t z_t)
    with its user's `weights` `[r, 3]`; context = the weights, seen with noise."""
    z = rng.normal(size=(n_requests, items, 3))
    utility = 3 * (z * weights[:, None, :]).sum(-1)
    pick = (utility + rng.gumbel(size=utility.shape)).argmax(1)
    labels = np.zeros((n_requests, items))
    labels[np.arange(n_requests), pick] = 1
    probs = 1 / (1 + np.exp(-z.reshape(-1, 3)))
    context = np.repeat(weights + rng.normal(0, 0.05, weights.shape), items, 0)
    groups = np.repeat(np.arange(n_requests), items)
    return probs.astype(np.float32), groups, context.astype(np.float32), labels.reshape(-1)


def _mean_hit_rank(score: np.ndarray, groups: np.ndarray, labels: np.ndarray, items: int) -> np.ndarray:
    """Per request: 1 / (1 + number of items scored above the positive) (its reciprocal rank)."""
    s, y = score.reshape(-1, items), labels.reshape(-1, items)
    positive = (s * y).sum(1, keepdims=True)
    return 1.0 / (1.0 + (s > positive).sum(1))


def _grade_minus_best_fixed(weights_train, weights_test, seed=0):
    rng = np.random.default_rng(seed)
    items = 8
    train = _requests(rng, len(weights_train), items, weights_train)
    test = _requests(rng, len(weights_test), items, weights_test)
    grade = PersonalizedWeightFusion(FusionConfig(epochs=30, batch_groups=64, lr=0.03), (1.0, 1.0, 1.0)).fit(
        train[0], train[1], train[2], train[3])
    learned = _mean_hit_rank(grade.score(test[0], test[2]), test[1], test[3], items).mean()
    grid = [w for w in np.ndindex(3, 3, 3) if any(w)]
    fixed = max(_mean_hit_rank(FixedWeightFusion(tuple(float(x) for x in w)).score(test[0]), test[1], test[3], items).mean()
                for w in grid)
    return learned - fixed


def test_grade_beats_every_fixed_blend_when_users_weigh_objectives_differently():
    rng = np.random.default_rng(1)
    one_hot = np.eye(3)[rng.integers(0, 3, 1_600)]
    assert _grade_minus_best_fixed(one_hot[:1_200], one_hot[1_200:]) > 0.05


def test_grade_gains_nothing_when_every_user_weighs_objectives_alike():
    equal = np.full((1_600, 3), 1 / 3)
    assert abs(_grade_minus_best_fixed(equal[:1_200], equal[1_200:])) < 0.02


# --- HarmonRank's relations -------------------------------------------------------------------------


def _planted(plant: bool, seed: int = 0):
    """Rankers 0..2 each rank their own objective; with `plant`, ranker 0 also ranks objective 2's
    labels (and ranker 2 is noise for them): the correlation step 1 should find."""
    rng = np.random.default_rng(seed)
    n_requests, items = 400, 8
    z = rng.normal(size=(n_requests * items, 3))
    labels = np.zeros_like(z)
    for t in range(3):
        driver = z[:, 0] if (plant and t == 2) else z[:, t]
        labels[:, t] = (driver + rng.normal(0, 0.5, len(z))) > 1.0
    probs = (1 / (1 + np.exp(-z))).astype(np.float32)
    groups = np.repeat(np.arange(n_requests), items)
    return probs, groups, np.zeros((len(z), 1), dtype=np.float32), labels


def test_relation_aware_weights_follow_a_planted_correlation():
    plain = RelationAwareEnsemble(EnsembleConfig(epochs=0)).fit(*_planted(False))
    planted = RelationAwareEnsemble(EnsembleConfig(epochs=0)).fit(*_planted(True))
    assert planted.relations_[0, 2] > plain.relations_[0, 2] + 0.2
    assert planted.alignment_[0, 2] > 0.9 and plain.alignment_[0, 2] < 0.1  # objective 2 now reads ranker 0
    context = np.zeros((1, 1), dtype=np.float32)
    assert planted.ranker_weights(context)[0, 0] > plain.ranker_weights(context)[0, 0]
    assert planted.ranker_weights(context)[0, 2] < plain.ranker_weights(context)[0, 2]


def test_training_on_the_rank_sum_auc_raises_every_objectives_auc():
    probs, groups, context, labels = _planted(False, seed=1)
    config = EnsembleConfig(epochs=20, batch_groups=64, task_importance=(1.0, 1.0, 1.0))
    start = RelationAwareEnsemble(EnsembleConfig(epochs=0), (1.0, 0.05, 0.05)).fit(probs, groups, context, labels)
    trained = RelationAwareEnsemble(config, (1.0, 0.05, 0.05)).fit(probs, groups, context, labels)
    before = [auc(start.score(probs, context), labels[:, t]) for t in range(3)]
    after = [auc(trained.score(probs, context), labels[:, t]) for t in range(3)]
    assert sum(after) > sum(before) + 0.05
