"""VRQ: several views of an item, each with its own encoder, aligned in one latent space and coded once."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genrec.features import item_vectors as item_vectors_module
from genrec.sid import VRQTokenizer, build_sids
from genrec.sid.config import SidConfig
from genrec.sid.vrq import ViewEncoders, view_alignment_loss
from tests.test_sid import fake_text_encoder
from tests.test_sid_collaborative import run_with_histories


def two_views(n: int = 240, seed: int = 0) -> np.ndarray:
    """A text view `[n, 12]` and a behaviour view `[n, 6]` that is a fixed map of it plus noise."""
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(n, 12))
    behaviour = np.tanh(text @ rng.normal(size=(12, 6))) + 0.1 * rng.normal(size=(n, 6))
    return np.c_[text, behaviour].astype(np.float32)


def cross_view_top10(tokenizer: VRQTokenizer, x: np.ndarray) -> float:
    """Share of items whose own behaviour latent is among their text latent's 10 nearest (cosine)."""
    with torch.no_grad():
        latents, _ = tokenizer.model_.encoder.view_latents(torch.from_numpy(x))
    text = torch.nn.functional.normalize(latents[:, 0], dim=1)
    behaviour = torch.nn.functional.normalize(latents[:, 1], dim=1)
    nearest = (text @ behaviour.T).topk(10, dim=1).indices
    return float((nearest == torch.arange(len(x))[:, None]).any(1).float().mean())


def test_alignment_loss_is_low_for_matching_views_and_ignores_rows_missing_a_view():
    torch.manual_seed(0)
    a = torch.randn(32, 8)
    matched = torch.stack([a, a], dim=1)
    shuffled = torch.stack([a, a[torch.randperm(32)]], dim=1)
    present = torch.ones(32, 2, dtype=torch.bool)
    assert view_alignment_loss(matched, present, 0.1) < 0.1 < view_alignment_loss(shuffled, present, 0.1)
    present[:4, 1] = False
    moved = matched.clone()
    moved[:4, 1] = torch.randn(4, 8) * 10  # rows without the view: whatever they hold does not count
    assert torch.allclose(view_alignment_loss(moved, present, 0.1), view_alignment_loss(matched, present, 0.1))


def test_an_item_without_behaviour_is_placed_by_its_text_alone():
    torch.manual_seed(0)
    encoders = ViewEncoders([4, 3], [8], 5)
    x = torch.randn(3, 7)
    x[0, 4:] = 0.0
    with torch.no_grad():
        fused = encoders(x)
        latents, present = encoders.view_latents(x)
    assert present.tolist() == [[True, False], [True, True], [True, True]]
    assert torch.allclose(fused[0], latents[0, 0])
    assert torch.allclose(fused[1], latents[1].mean(0))


def test_alignment_lets_each_view_find_its_own_item():
    x = two_views()
    kwargs = dict(levels=2, codebook_size=8, latent_dim=8, hidden_dims=(16,), epochs=40, batch_size=64, seed=0)
    aligned = VRQTokenizer((12, 6), alignment_weight=1.0, **kwargs).fit(x)
    unaligned = VRQTokenizer((12, 6), alignment_weight=0.0, **kwargs).fit(x)
    assert cross_view_top10(aligned, x) > cross_view_top10(unaligned, x) + 0.2


def test_vrq_codes_survive_save_and_load(tmp_path):
    x = two_views(120)
    tokenizer = VRQTokenizer((12, 6), levels=2, codebook_size=8, latent_dim=8, hidden_dims=(16,), epochs=5, seed=1).fit(x)
    tokenizer.save(tmp_path / "vrq.npz")
    loaded = VRQTokenizer.load(tmp_path / "vrq.npz")
    assert loaded.view_dims == (12, 6)
    np.testing.assert_array_equal(loaded.transform(x), tokenizer.transform(x))


@pytest.mark.parametrize("make, match", [
    (lambda: VRQTokenizer((18,)).fit(two_views(40)), "view_dims"),
    (lambda: VRQTokenizer((12, 6), alignment_weight=-1.0).fit(two_views(40)), "alignment_weight"),
    (lambda: VRQTokenizer((10, 6), levels=1, codebook_size=4, epochs=1).fit(two_views(40)), "add up to"),
    (lambda: SidConfig(method="vrq", collaborative_weight=0.0), "collaborative_weight"),
])
def test_bad_vrq_settings_are_refused_by_name(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_build_sids_with_vrq_codes_text_and_behaviour(tmp_path, monkeypatch):
    monkeypatch.setattr(item_vectors_module, "encode_texts", fake_text_encoder)
    run = run_with_histories(tmp_path)
    table = build_sids(run, method="vrq", levels=2, epochs=3, progress=False)
    assert len(np.unique(table.codes, axis=0)) == len(table)
    tokenizer = VRQTokenizer.load(run / "sid" / "tokenizer.npz")
    assert tokenizer.view_dims == (32, 32)  # the text view, then the collaborative view
    assert json.loads((run / "sid" / "config.json").read_text())["method"] == "vrq"
