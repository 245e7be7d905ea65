"""The training loop: same weights on every DDP rank, exact resume, a documented
LR schedule, learning, and checkpoints a crash cannot corrupt."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_training import DDP_CONFIG, collate, make_model, mse, toy_examples, weight_hash

from genrec.train import loop
from genrec.train.loop import TrainConfig, batch_indices, load_best, lr_at, train

HERE = Path(__file__).parent


def _config(**overrides) -> TrainConfig:
    values = dict(steps=30, batch_size=16, lr=1e-2, warmup_steps=3, eval_every=10, checkpoint_every=7,
                  device="cpu", progress=False)
    return TrainConfig(**{**values, **overrides})


@pytest.mark.slow
def test_two_torchrun_processes_end_with_identical_weights_equal_to_one_process(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(HERE / "toy_training.py"), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    hashes = [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)]
    assert hashes[0] == hashes[1]

    # Two ranks with half a batch each take the same steps as one process with the whole batch.
    single = make_model(seed=0)
    train(single, mse, toy_examples(), collate, DDP_CONFIG, tmp_path / "single")
    distributed = torch.load(tmp_path / "rank0.pt")
    for name, tensor in single.state_dict().items():
        torch.testing.assert_close(distributed[name], tensor, rtol=1e-4, atol=1e-5)


def test_interrupted_then_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    config = _config()
    evaluate = lambda m: {"ndcg@10": -float(sum(p.abs().sum() for p in m.parameters()))}  # noqa: E731
    whole = make_model(dropout=0.3)
    whole_result = train(whole, mse, toy_examples(), collate, config, tmp_path / "whole", evaluate=evaluate)

    parts = make_model(dropout=0.3)
    first = train(parts, mse, toy_examples(), collate, config, tmp_path / "parts", evaluate=evaluate, stop_after=12)
    assert first.last_step == 12
    # A fresh process: a new model object with other weights and other RNG states.
    torch.manual_seed(123)
    np.random.seed(123)
    resumed = make_model(dropout=0.3, seed=99)
    result = train(resumed, mse, toy_examples(), collate, config, tmp_path / "parts", evaluate=evaluate, resume=True)

    assert result.last_step == config.steps
    for name, tensor in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], tensor), name
    assert result.best_step == whole_result.best_step and result.best_metric == whole_result.best_metric
    assert result.history == whole_result.history
    assert result.losses == whole_result.losses


def test_resume_from_a_checkpoint_between_steps_replays_the_lost_steps_identically(tmp_path):
    config = _config(checkpoint_every=5)
    whole = make_model(dropout=0.3)
    train(whole, mse, toy_examples(), collate, config, tmp_path / "whole")
    # The "crash" happens at step 13; the last checkpoint is from step 10.
    parts = make_model(dropout=0.3)

    def crash_at_13(model, batch, calls=[0]):  # noqa: B006 (one counter shared by every call, on purpose)
        calls[0] += 1
        if calls[0] == 14:
            raise RuntimeError("simulated crash")
        return mse(model, batch)

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(parts, crash_at_13, toy_examples(), collate, config, tmp_path / "parts")
    assert torch.load(tmp_path / "parts" / "last.pt", weights_only=True)["step"] == 10
    resumed = make_model(dropout=0.3, seed=7)
    train(resumed, mse, toy_examples(), collate, config, tmp_path / "parts", resume=True)
    assert weight_hash(resumed) == weight_hash(whole)


def test_resume_with_a_different_trajectory_config_is_refused(tmp_path):
    train(make_model(), mse, toy_examples(), collate, _config(), tmp_path, stop_after=3)
    with pytest.raises(ValueError, match="batch_size"):
        train(make_model(), mse, toy_examples(), collate, _config(batch_size=32), tmp_path, resume=True)


@dataclass(frozen=True)
class _ToyConfig:
    dropout: float


def _configured_model(dropout: float):
    model = make_model(dropout=dropout)
    model.config = _ToyConfig(dropout)
    return model


def test_resume_with_a_model_built_another_way_is_refused_even_when_the_weights_fit(tmp_path):
    train(_configured_model(0.3), mse, toy_examples(), collate, _config(), tmp_path, stop_after=3)
    with pytest.raises(ValueError, match="dropout: saved 0.3, now 0.0"):
        train(_configured_model(0.0), mse, toy_examples(), collate, _config(), tmp_path, resume=True)
    # The same model continues.
    result = train(_configured_model(0.3), mse, toy_examples(), collate, _config(), tmp_path, resume=True)
    assert result.last_step == _config().steps


def test_loss_goes_down_on_a_learnable_problem(tmp_path):
    examples = toy_examples()
    variance = float(np.var([y for _, _, y in examples]))
    result = train(make_model(), mse, examples, collate, _config(steps=200, lr=2e-2), tmp_path)
    assert np.mean(result.losses[:5]) > 0.5 * variance  # starts no better than predicting the mean
    assert np.mean(result.losses[-5:]) < 0.1 * variance


def test_best_checkpoint_holds_the_weights_of_the_best_evaluation(tmp_path):
    examples = toy_examples()
    batch = collate(examples[:64])
    snapshots = {}

    def evaluate(model):
        step = len(snapshots) * 10 + 10
        snapshots[step] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"ndcg@10": 1.0 if step == 20 else 0.5, "loss": float(mse(model, batch))}

    result = train(make_model(), mse, examples, collate, _config(), tmp_path, evaluate=evaluate)
    assert (result.best_step, result.best_metric) == (20, 1.0)
    assert [h["step"] for h in result.history] == [10, 20, 30]
    restored = make_model(seed=5)
    meta = load_best(restored, tmp_path)
    assert meta["step"] == 20 and meta["config"]["steps"] == 30
    for name, tensor in snapshots[20].items():
        assert torch.equal(restored.state_dict()[name], tensor)


def test_evaluate_missing_the_selection_metric_names_it(tmp_path):
    with pytest.raises(ValueError, match="ndcg@10"):
        train(make_model(), mse, toy_examples(), collate, _config(steps=10), tmp_path, evaluate=lambda m: {"recall@10": 0.1})


def test_lr_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    config = TrainConfig(steps=1000, lr=1e-3, warmup_steps=100, min_lr_ratio=0.1)
    lrs = np.array([lr_at(s, config) for s in range(config.steps)])
    np.testing.assert_allclose(lrs[:100], 1e-3 * np.arange(1, 101) / 100)
    assert lrs[99] == pytest.approx(1e-3) and lrs.max() == pytest.approx(1e-3)
    assert np.all(np.diff(lrs[100:]) <= 0)
    assert lrs[-1] == pytest.approx(1e-4)
    midpoint = 100 + (config.steps - 1 - 100) / 2
    assert lr_at(int(midpoint), config) == pytest.approx(5.5e-4, rel=1e-2)  # halfway down the cosine


def test_the_optimizer_uses_the_scheduled_lr_and_skips_decay_on_norms_biases_embeddings(tmp_path):
    model = make_model()
    optimizer = loop._optimizer(model, _config(), torch.device("cpu"))
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model.net[0].weight), id(model.net[3].weight)}


def test_every_example_is_seen_once_per_epoch_split_disjointly_across_ranks():
    n, batch, world = 50, 8, 2
    per_epoch = -(-n // batch)
    for epoch in range(2):
        seen = np.concatenate([batch_indices(epoch * per_epoch + b, n, batch, seed=3, rank=r, world_size=world)
                               for b in range(per_epoch) for r in range(world)])
        assert set(seen.tolist()) == set(range(n))
        assert len(seen) == per_epoch * batch
    full = batch_indices(4, n, batch, seed=3)
    halves = [batch_indices(4, n, batch, seed=3, rank=r, world_size=2) for r in range(2)]
    assert sorted(full.tolist()) == sorted(np.concatenate(halves).tolist())
    assert not set(halves[0].tolist()) & set(halves[1].tolist())
    assert not np.array_equal(batch_indices(0, n, batch, seed=3), batch_indices(per_epoch, n, batch, seed=3))


def test_a_crash_while_saving_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    config = _config(checkpoint_every=5)
    train(make_model(), mse, toy_examples(), collate, config, tmp_path, stop_after=5)
    real_save = torch.save

    def save_half_then_crash(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        with open(path, "r+b") as handle:  # truncate: the bytes a dying process left behind
            handle.truncate(100)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", save_half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        train(make_model(), mse, toy_examples(), collate, config, tmp_path, resume=True, stop_after=5)
    monkeypatch.setattr(torch, "save", real_save)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "metrics.csv"]  # no half-written file left
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 5
    result = train(make_model(), mse, toy_examples(), collate, config, tmp_path, resume=True)
    assert result.last_step == config.steps


def test_bad_config_values_name_the_field():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="divisible"):
        batch_indices(0, 10, 5, seed=0, rank=0, world_size=2)


# --- a crash loses at most a minute; resume says what it resumes, or why it cannot ----------------


class _FakeClock:
    """Training time that advances only when a step runs: checkpoint timing without sleeping."""

    def __init__(self, seconds_per_step: float):
        self.now, self.seconds_per_step = 0.0, seconds_per_step

    def __call__(self) -> float:
        return self.now

    def loss(self, crash_at_call: int | None = None):
        calls = [0]

        def loss_fn(model, batch):
            calls[0] += 1
            if crash_at_call is not None and calls[0] == crash_at_call:
                raise RuntimeError("simulated kill")
            self.now += self.seconds_per_step
            return mse(model, batch)

        return loss_fn


def test_the_default_checkpoint_interval_loses_at_most_a_minute_of_work():
    assert TrainConfig().checkpoint_seconds == 60.0


def test_a_checkpoint_is_written_when_the_time_interval_ends_long_before_the_step_interval(tmp_path, monkeypatch):
    clock = _FakeClock(seconds_per_step=10.0)
    monkeypatch.setattr(loop, "_clock", clock)
    config = _config(checkpoint_every=1000, checkpoint_seconds=25.0)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(make_model(), clock.loss(crash_at_call=8), toy_examples(), collate, config, tmp_path)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert saved["step"] == 6  # saved at 2, 4, 6: each save comes before the next step would pass 25 s
    lost_seconds = clock.now - saved["step"] * clock.seconds_per_step
    assert lost_seconds <= config.checkpoint_seconds


def test_a_run_killed_after_a_timed_checkpoint_resumes_bit_identically(tmp_path, monkeypatch):
    config = _config(checkpoint_every=1000, checkpoint_seconds=35.0)
    whole = make_model(dropout=0.3)
    train(whole, mse, toy_examples(), collate, config, tmp_path / "whole")

    clock = _FakeClock(seconds_per_step=10.0)
    monkeypatch.setattr(loop, "_clock", clock)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(make_model(dropout=0.3), clock.loss(crash_at_call=12), toy_examples(), collate, config, tmp_path / "parts")
    assert torch.load(tmp_path / "parts" / "last.pt", weights_only=True)["step"] == 9
    resumed = make_model(dropout=0.3, seed=7)
    train(resumed, clock.loss(), toy_examples(), collate, config, tmp_path / "parts", resume=True)
    assert weight_hash(resumed) == weight_hash(whole)


def test_resume_with_no_checkpoint_says_so_instead_of_restarting_from_step_zero(tmp_path):
    with pytest.raises(loop.CheckpointError) as caught:
        train(make_model(), mse, toy_examples(), collate, _config(), tmp_path, resume=True)
    message = str(caught.value)
    assert "nothing to resume" in message and str(tmp_path / "last.pt") in message and "without --resume" in message
    assert not (tmp_path / "last.pt").exists() and not (tmp_path / "best.pt").exists()  # nothing was trained


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_content"])
def test_a_corrupt_last_checkpoint_is_named_instead_of_a_raw_traceback(tmp_path, damage):
    train(make_model(), mse, toy_examples(), collate, _config(), tmp_path, stop_after=7)
    path = tmp_path / "last.pt"
    if damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    else:
        torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(loop.CheckpointError) as caught:
        train(make_model(), mse, toy_examples(), collate, _config(), tmp_path, resume=True)
    assert str(path) in str(caught.value) and "delete it" in str(caught.value)


def test_a_corrupt_best_checkpoint_is_named(tmp_path):
    train(make_model(), mse, toy_examples(), collate, _config(steps=5), tmp_path)
    (tmp_path / "best.pt").write_bytes(b"\x00" * 64)
    with pytest.raises(loop.CheckpointError, match="best.pt"):
        load_best(make_model(), tmp_path)


def test_bad_checkpoint_intervals_name_the_field():
    with pytest.raises(ValueError, match="checkpoint_seconds"):
        TrainConfig(checkpoint_seconds=0)
    TrainConfig(checkpoint_seconds=None)  # step interval only
