"""metrics.csv: the training curve beside the checkpoints, one row per logged step, each step once
even after a crash and a resume."""

from __future__ import annotations

import numpy as np
import pytest
from toy_training import collate, make_model, mse, toy_examples

from genrec.train.loop import TrainConfig, lr_at, train
from genrec.train.metrics_csv import METRICS_FILE, MetricsCSV, read_metrics


def _config(**overrides) -> TrainConfig:
    values = dict(steps=12, batch_size=16, lr=1e-2, warmup_steps=3, eval_every=5, checkpoint_every=5,
                  checkpoint_seconds=None, log_every=2, device="cpu", progress=False)
    return TrainConfig(**{**values, **overrides})


def _validation(model):
    return {"ndcg@10": float(model.net[0].weight.abs().mean()), "recall@10": 0.5}


def test_a_row_every_log_every_steps_and_at_each_evaluation_with_the_window_loss_and_scheduled_lr(tmp_path):
    config = _config()
    result = train(make_model(), mse, toy_examples(), collate, config, tmp_path, evaluate=_validation)
    rows = read_metrics(tmp_path / METRICS_FILE)
    assert [r["step"] for r in rows] == [2, 4, 5, 6, 8, 10, 12]
    assert (tmp_path / METRICS_FILE).read_text().splitlines()[0] == "step,loss,lr,examples_per_s,time,ndcg@10,recall@10"
    previous = 0
    for row in rows:
        assert row["loss"] == pytest.approx(np.mean(result.losses[previous:row["step"]]), rel=1e-6)
        assert row["lr"] == pytest.approx(lr_at(row["step"] - 1, config), rel=1e-6)
        assert row["examples_per_s"] > 0
        previous = row["step"]
    evaluated = {h["step"]: h["ndcg@10"] for h in result.history}
    assert {r["step"]: r["ndcg@10"] for r in rows if "ndcg@10" in r} == pytest.approx(evaluated, rel=1e-6)


def test_a_crashed_then_resumed_run_has_each_step_once_and_the_uninterrupted_runs_numbers(tmp_path):
    train(make_model(), mse, toy_examples(), collate, _config(), tmp_path / "whole", evaluate=_validation)

    def crash_at_step_10(model, calls=[]):  # noqa: B006 - counts the calls of this one run
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return _validation(model)

    with pytest.raises(RuntimeError, match="killed"):
        train(make_model(), mse, toy_examples(), collate, _config(), tmp_path / "parts", evaluate=crash_at_step_10)
    # last.pt is from step 5; rows 6 and 8 were written after it and will be trained again
    assert [r["step"] for r in read_metrics(tmp_path / "parts" / METRICS_FILE)] == [2, 4, 5, 6, 8]
    with open(tmp_path / "parts" / METRICS_FILE, "a") as torn:
        torn.write("9,0.12")  # a row cut short by the crash
    train(make_model(seed=3), mse, toy_examples(), collate, _config(), tmp_path / "parts", evaluate=_validation,
          resume=True)

    whole, parts = read_metrics(tmp_path / "whole" / METRICS_FILE), read_metrics(tmp_path / "parts" / METRICS_FILE)
    assert [r["step"] for r in parts] == [2, 4, 5, 6, 8, 10, 12]
    for a, b in zip(whole, parts):
        assert {k: v for k, v in a.items() if k not in ("time", "examples_per_s")} == \
               pytest.approx({k: v for k, v in b.items() if k not in ("time", "examples_per_s")}, rel=1e-6)


def test_a_fresh_run_replaces_the_file_and_a_new_column_keeps_earlier_rows(tmp_path):
    path = tmp_path / METRICS_FILE
    log = MetricsCSV(path)
    log.append({"step": 1, "loss": 2.5, "lr": 0.001, "examples_per_s": 10.0})
    log.append({"step": 2, "loss": 2.0, "lr": 0.001, "examples_per_s": 10.0, "ndcg@10": 0.25})
    rows = read_metrics(path)
    assert [r["step"] for r in rows] == [1, 2] and "ndcg@10" not in rows[0] and rows[1]["ndcg@10"] == 0.25
    MetricsCSV(path)
    assert read_metrics(path) == []
    with pytest.raises(ValueError, match="step"):
        MetricsCSV(path).append({"loss": 1.0})


def test_log_every_must_be_positive():
    with pytest.raises(ValueError, match="log_every"):
        TrainConfig(log_every=0)
