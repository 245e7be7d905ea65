"""DiffusionGS (`genrec.model.diffusion_interest`): the interest token depends on the query and on the
user (the UDL), is deterministic at inference, never reads the target, and its reconstruction loss
trains the denoiser to recover a clean vector; a search model gains exactly one token."""

from dataclasses import replace

import pytest
import torch

from genrec.model import EncoderBatch, GenerativeConfig, GenerativeModel, InputSpec
from genrec.model.diffusion_interest import DiffusionInterest

CONFIG = GenerativeConfig(item_head=False, d_model=32, n_heads=4, d_ff=48, dropout=0.0, copy_recent=0,
                          diffusion_steps=4)
SPEC = InputSpec(codebook_sizes=(9, 5, 4), query_vocab_size=50, user_vocab_size=20, context_vocab_size=100)


def _inputs(batch: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    anchor, user = torch.randn(batch, 32, generator=g), torch.randn(batch, 32, generator=g)
    history = torch.randn(batch, 6, 32, generator=g)
    real = torch.ones(batch, 6, dtype=torch.bool)
    real[0, :4] = False
    return anchor, user, history, real


def _interest() -> DiffusionInterest:
    torch.manual_seed(0)
    return DiffusionInterest(32, steps=4).eval()


def test_the_interest_token_is_deterministic_and_moves_with_the_query_and_the_user():
    interest = _interest()
    anchor, user, history, real = _inputs()
    token, mask = interest(anchor, user, history, real)
    again, _ = interest(anchor, user, history, real)
    assert token.shape == (3, 1, 32) and mask.all() and torch.equal(token, again)
    other_query, _ = interest(anchor + 1.0, user, history, real)
    other_user, _ = interest(anchor, user + 1.0, history, real)  # the UDL: same query, another user
    assert not torch.allclose(other_query, token) and not torch.allclose(other_user, token)


def test_padding_in_the_history_is_never_read_and_no_history_is_finite():
    interest = _interest()
    anchor, user, history, real = _inputs()
    token, _ = interest(anchor, user, history, real)
    moved = history.clone()
    moved[0, :4] += 100.0  # request 0's padded positions
    torch.testing.assert_close(interest(anchor, user, moved, real)[0], token)
    empty, _ = interest(anchor, user, history, torch.zeros_like(real))
    assert torch.isfinite(empty).all()


def test_training_the_reconstruction_loss_recovers_the_target_from_its_conditions():
    """A target that is a function of the history (its second position): the denoiser must learn to read it."""
    torch.manual_seed(0)
    interest = DiffusionInterest(32, steps=4)
    optimizer = torch.optim.Adam(interest.parameters(), lr=3e-3)
    anchor, user, history, real = _inputs(batch=64, seed=1)
    real[:] = True
    target = history[:, 1] * 3.0

    def loss_now() -> float:
        torch.manual_seed(5)
        with torch.no_grad():
            return float(interest.reconstruction_loss(target, anchor, user, history, real))

    before = loss_now()
    for _ in range(300):
        optimizer.zero_grad()
        interest.reconstruction_loss(target, anchor, user, history, real).backward()
        optimizer.step()
    assert loss_now() < 0.5 * before


def test_a_search_model_reads_one_more_token_and_training_adds_the_weighted_reconstruction():
    torch.manual_seed(0)
    model = GenerativeModel(CONFIG, SPEC)
    plain = GenerativeModel(replace(CONFIG, diffusion_steps=0), SPEC)
    batch = EncoderBatch.random(SPEC, 6, torch.Generator().manual_seed(3))
    search = GenerativeModel.has_query(batch)
    assert search.any()
    memory, mask, _ = model.eval().encode_memory(batch.index(search.nonzero()[:, 0]).trim())
    plain_memory, _, _ = plain.eval().encode_memory(batch.index(search.nonzero()[:, 0]).trim())
    assert memory.shape[1] == plain_memory.shape[1] + 1
    codes = torch.stack([torch.randint(0, v, (6,)) for v in SPEC.codebook_sizes], 1)
    with torch.no_grad():
        eval_loss = model.loss(batch, codes)  # no reconstruction outside training
    unweighted = GenerativeModel(replace(CONFIG, diffusion_weight=0.0), SPEC)
    unweighted.load_state_dict(model.state_dict())
    losses = []
    for m in (model.train(), unweighted.train()):
        torch.manual_seed(7)  # the same noise level and noise for both
        losses.append(float(m.loss(batch, codes).detach()))
    assert losses[0] > losses[1] and torch.isfinite(eval_loss)


def test_each_reading_of_a_batch_carries_its_own_reconstruction_loss():
    """Self-distillation reads every batch twice (student, teacher); each reading's reconstruction
    loss is its own, so both count (a model-level stash once kept only the second)."""
    from genrec.model.self_distill import self_distillation_loss

    torch.manual_seed(0)
    model = GenerativeModel(CONFIG, SPEC).train()
    student = EncoderBatch.random(SPEC, 6, torch.Generator().manual_seed(3))
    teacher = EncoderBatch.random(SPEC, 6, torch.Generator().manual_seed(4))
    codes = torch.stack([torch.randint(0, v, (6,)) for v in SPEC.codebook_sizes], 1)
    torch.manual_seed(7)
    first, second = model.teacher_forced(student, codes), model.teacher_forced(teacher, codes)
    assert first.reconstruction is not None and second.reconstruction is not None
    assert not torch.equal(first.reconstruction, second.reconstruction)
    torch.manual_seed(7)
    expected = 0.5 * (model.loss_from(model.teacher_forced(student, codes), codes, None)
                      + model.loss_from(model.teacher_forced(teacher, codes), codes, None))
    torch.manual_seed(7)
    assert torch.allclose(self_distillation_loss(model, student, teacher, codes, None, weight=0.0), expected)
    model.eval()
    assert model.teacher_forced(student, codes).reconstruction is None


def test_diffusion_needs_a_search_model_and_positive_steps():
    with pytest.raises(ValueError, match="diffusion_steps needs tasks"):
        GenerativeConfig(tasks="recommendation", diffusion_steps=2)
    with pytest.raises(ValueError, match="steps must be ≥ 1"):
        DiffusionInterest(8, steps=0)
