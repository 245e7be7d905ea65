"""DimeRec: its denoiser removes noise, its interest pooling is causal, and as a retriever it trains, saves
and loads like SASRec."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_sasrec import small_config, successor_world

from genrec.artifacts import MissingStageError
from genrec.baselines.dimerec import DimeRec, DimeRecConfig, DimeRecLoss, DimeRecRetriever, cosine_signal_levels
from genrec.baselines.sasrec import SASRecModelConfig
from genrec.data.splits import build_requests, leave_one_out
from genrec.registry import build_retriever
from genrec.retrieval import Retriever


def dimerec_model(seed: int = 0, steps: int = 20, sampling: int = 4) -> DimeRec:
    torch.manual_seed(seed)
    config = SASRecModelConfig(n_items=30, max_history=10, dim=16, heads=2, layers=1, dropout=0.0)
    return DimeRec(config, None, interests=3, diffusion_steps=steps, sampling_steps=sampling).eval()


def test_signal_levels_fall_from_clean_to_noise():
    levels = cosine_signal_levels(50)
    assert levels[0] == pytest.approx(1.0) and levels[-1] < 0.01
    assert torch.all(levels[1:] < levels[:-1])


def test_the_denoiser_learns_to_remove_noise_on_a_toy_signal():
    """Eight items, a guidance that points at the target: after training, the denoised vector is much
    closer to the clean one than the noisy input is (rescaled), and generation lands on the right item."""
    model = dimerec_model().train()
    model.item_embedding.weight.requires_grad_(False)
    optimizer = torch.optim.Adam([p for n, p in model.named_parameters() if n.startswith(("denoiser", "step"))], lr=3e-3)
    generator = torch.Generator().manual_seed(0)

    def example(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        targets = torch.randint(1, 9, (n,), generator=generator)
        clean = model.clean_vectors(targets)
        guidance = clean + 0.3 * torch.randn(clean.shape, generator=generator)
        step = torch.randint(1, model.diffusion_steps + 1, (n,), generator=generator)
        return targets, clean, guidance, step

    def errors() -> tuple[float, float]:
        _, clean, guidance, step = example(512)
        noisy = model.noised(clean, step, torch.randn(clean.shape, generator=generator))
        with torch.no_grad():
            denoised = model.denoise(noisy, step, guidance)
        naive = noisy / model.signal[step][:, None].sqrt()
        return float((denoised - clean).norm(dim=1).mean()), float((naive - clean).norm(dim=1).mean())

    untrained, naive = errors()
    for _ in range(400):
        _, clean, guidance, step = example(128)
        noisy = model.noised(clean, step, torch.randn(clean.shape, generator=generator))
        loss = torch.nn.functional.mse_loss(model.denoise(noisy, step, guidance), clean)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trained, naive_again = errors()
    assert trained < 0.3 * naive_again and trained < 0.5 * untrained

    targets, clean, guidance, _ = example(64)
    with torch.no_grad():
        generated = model.generate(guidance)
        candidates = model.clean_vectors(torch.arange(1, 9))
    nearest = (generated @ candidates.T).argmax(1) + 1
    assert (nearest == targets).float().mean() > 0.9


def test_a_prefix_guidance_never_depends_on_later_positions():
    model = dimerec_model()
    items = torch.tensor([[3, 7, 1, 9, 4, 12, 5, 0, 0, 0]])
    changed = items.clone()
    changed[0, 4:] = torch.tensor([20, 21, 22, 23, 24, 25])
    with torch.no_grad():
        short, long, other = model(items[:, :4]), model(items), model(changed)
    assert torch.allclose(long[:, :4], short, atol=1e-5)
    assert torch.allclose(other[:, :4], short, atol=1e-5)
    assert not torch.allclose(other[:, 4:7], long[:, 4:7], atol=1e-3)


def test_ranking_reads_the_generated_vector_not_the_guidance():
    model = dimerec_model()
    items, lengths = torch.tensor([[3, 7, 1, 0]]), torch.tensor([3])
    with torch.no_grad():
        guidance = model(items)[:, 2]
        before = model.last_hidden(items, lengths)
        assert torch.allclose(before, model.generate(guidance))
        model.denoiser[-1].bias.add_(1.0)  # only the diffusion changes
        assert torch.allclose(model(items)[:, 2], guidance)
        assert not torch.allclose(model.last_hidden(items, lengths), before)


def test_the_loss_adds_its_parts_by_their_weights():
    model = dimerec_model().train()
    batch = {"inputs": torch.tensor([[3, 4, 5, 0]]), "targets": torch.tensor([[4, 5, 6, 0]])}
    counts = np.ones(31)
    losses = {}
    for weights in ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)):
        config = DimeRecConfig(loss="ce", guidance_weight=weights[0], reconstruction_weight=weights[1])
        torch.manual_seed(0)
        losses[weights] = float(DimeRecLoss(config, counts)(model, batch).detach())
    assert losses[1.0, 0.0] > losses[0.0, 0.0] and losses[0.0, 1.0] > losses[0.0, 0.0]


def test_dimerec_retriever_learns_the_successor_pattern_and_loads_from_its_own_folder(tmp_path):
    dataset = successor_world()
    split = leave_one_out(dataset.events)
    base = small_config(steps=150)
    config = DimeRecConfig(**{**base.__dict__, "dim": 32, "diffusion_steps": 20, "sampling_steps": 4})
    with pytest.raises(MissingStageError, match="--model dimerec"):
        DimeRecRetriever.from_run(tmp_path, dataset, split, config)
    trained = DimeRecRetriever.train(tmp_path, dataset, split, config)
    assert isinstance(trained, Retriever) and trained.name == "dimerec"
    assert isinstance(trained.model, DimeRec) and (tmp_path / "train" / "dimerec" / "best.pt").exists()
    requests, targets = build_requests(split, "test", max_history=8)
    first = np.array([a.item_ids[0] for a in trained.retrieve(requests, k=5)])
    assert np.mean(first == targets) > 0.8
    loaded = DimeRecRetriever.from_run(tmp_path, dataset, split, config)
    for name, tensor in trained.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor)


def test_the_registry_builds_dimerec_and_names_its_training_command(tmp_path):
    dataset = successor_world()
    with pytest.raises(MissingStageError, match="genrec train --run .* --model dimerec"):
        build_retriever("dimerec", tmp_path, dataset, leave_one_out(dataset.events))


@pytest.mark.parametrize("fields, match", [
    ({"sampling_steps": 60, "diffusion_steps": 50}, "sampling_steps"),
    ({"interests": 0}, "interests"),
    ({"reconstruction_weight": -1.0}, "reconstruction_weight"),
    ({"loss": "bpr"}, "loss"),
])
def test_bad_dimerec_settings_are_refused_by_name(fields, match):
    with pytest.raises(ValueError, match=match):
        DimeRecConfig(**fields)
