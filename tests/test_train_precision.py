"""bf16 autocast on a CPU (`TrainConfig.cpu_bf16`, on by default where the CPU has bf16 arithmetic):
it trains in bf16, keeps fp32 master weights and optimizer state, and `cpu_bf16=false` (or a CPU
without bf16) trains exactly as with autocast off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from toy_training import collate, make_model, mse, toy_examples

from genrec.model import GenerativeConfig
from genrec.train import loop
from genrec.train.generative import GenerativeTrainConfig, train_generative
from genrec.train.loop import LAST_CHECKPOINT, TrainConfig, autocast_context, train

SAVED_CONFIG = Path(__file__).parent / "fixtures" / "saved" / "generative_config_before_cpu_bf16.json"
"""A generative model's `config.json` as genrec wrote it before `cpu_bf16` existed (train.bf16: true)."""


def _config(**overrides) -> TrainConfig:
    values = dict(steps=6, batch_size=16, lr=1e-2, warmup_steps=2, eval_every=100, checkpoint_every=100,
                  device="cpu", progress=False)
    return TrainConfig(**{**values, **overrides})


def test_a_config_saved_before_cpu_bf16_loads_and_trains_with_the_default(monkeypatch):
    saved = json.loads(SAVED_CONFIG.read_text())
    assert saved["train"]["bf16"] is True and "cpu_bf16" not in saved["train"]
    config = GenerativeTrainConfig.from_dict(saved)
    assert config.train.bf16 is True and config.train.cpu_bf16 is True
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: True)
    assert autocast_context(config.train, torch.device("cpu"))._enabled
    assert not autocast_context(TrainConfig(cpu_bf16=False), torch.device("cpu"))._enabled


def test_a_cpu_without_bf16_arithmetic_trains_in_fp32_whatever_the_config_says(monkeypatch):
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: False)
    assert not autocast_context(TrainConfig(cpu_bf16=True), torch.device("cpu"))._enabled


def test_cpu_has_bf16_reads_the_cpus_flags():
    from pathlib import Path as _Path

    flags = _Path("/proc/cpuinfo").read_text() if _Path("/proc/cpuinfo").exists() else ""
    assert loop.cpu_has_bf16() == (" avx512_bf16" in flags or " amx_bf16" in flags)


def test_cpu_bf16_parses_from_a_set_override():
    from genrec.train.config_file import load_train_config

    assert load_train_config(None, ["train.cpu_bf16=true"]).train.cpu_bf16 is True
    with pytest.raises(ValueError, match="cpu_bf16"):
        load_train_config(None, ["train.cpu_bf16=3"])


def _trained_weights(tmp_path: Path, name: str, config: TrainConfig) -> dict[str, torch.Tensor]:
    model = make_model(dropout=0.3)
    train(model, mse, toy_examples(), collate, config, tmp_path / name)
    return model.state_dict()


def test_cpu_bf16_false_training_is_bit_identical_to_training_with_autocast_off(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: True)
    default = _trained_weights(tmp_path, "default", _config(cpu_bf16=False))
    bf16 = _trained_weights(tmp_path, "bf16", _config())
    # What the loop did before cpu_bf16: a CUDA autocast, disabled on a CPU.
    monkeypatch.setattr(loop, "autocast_context",
                        lambda config, device: torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=False))
    reference = _trained_weights(tmp_path, "reference", _config())
    for name, tensor in reference.items():
        assert torch.equal(default[name], tensor), name
    # ...and the comparison can tell: bf16 arithmetic ends elsewhere.
    assert any(not torch.equal(bf16[name], tensor) for name, tensor in reference.items())


def test_cpu_bf16_runs_the_forward_in_bf16_and_keeps_fp32_master_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: True)
    seen: list[torch.dtype] = []

    def recording_mse(model, batch):
        seen.append(model.net[0](batch["x"]).dtype)  # a Linear's output: bf16 under autocast
        return mse(model, batch)

    model = make_model()
    result = train(model, recording_mse, toy_examples(), collate, _config(cpu_bf16=True, steps=40), tmp_path)
    assert set(seen) == {torch.bfloat16}
    losses = torch.tensor(result.losses)
    assert torch.isfinite(losses).all()
    assert losses[-10:].mean() < losses[:10].mean() / 2  # it learns
    assert all(p.dtype == torch.float32 for p in model.parameters())
    _assert_fp32_checkpoint(tmp_path / LAST_CHECKPOINT)


def _assert_fp32_checkpoint(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    assert all(t.dtype == torch.float32 for t in state["model"].values() if t.is_floating_point())
    moments = [t for s in state["optimizer"]["state"].values() for k, t in s.items() if k in ("exp_avg", "exp_avg_sq")]
    assert moments and all(t.dtype == torch.float32 for t in moments)


def test_the_generative_model_trains_in_cpu_bf16_with_finite_loss_and_fp32_state(small_sid_run):
    config = GenerativeTrainConfig(
        model=GenerativeConfig(item_head=False, d_model=32, n_heads=2, d_ff=64, dropout=0.0, n_encoder_layers=1, n_decoder_layers=1,
                               max_short=4, max_long=4),
        query_vectors=False, valid_requests=20, beams=5,
        train=TrainConfig(steps=3, batch_size=32, eval_every=3, checkpoint_every=3, warmup_steps=1, progress=False,
                          device="cpu", cpu_bf16=True))
    out = train_generative(small_sid_run, config, progress=False)
    _assert_fp32_checkpoint(out / LAST_CHECKPOINT)
    result = json.loads((out / "manifest.json").read_text())["result"]
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in result["history"])
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["cpu_bf16"] is True
    assert GenerativeTrainConfig.from_dict(saved).train.cpu_bf16 is True
