"""Per-action cross-attention fusion (`genrec.model.action_fusion`): each action's queries read
only that action's positions, an action never taken gives masked zero tokens, and a search model
with it reads `n_actions × queries` more tokens and decodes the same items through `FastDecoder`."""

from dataclasses import replace

import numpy as np
import torch

from genrec.decode import PrefixTrie, constrained_beam_search
from genrec.model import EncoderBatch, GenerativeConfig, GenerativeModel, InputSpec
from genrec.model.action_fusion import ActionFusion
from genrec.model.inference import FastDecoder

CONFIG = GenerativeConfig(item_head=False, d_model=32, n_heads=4, d_ff=48, dropout=0.0, copy_recent=0, action_fusion=2)
SPEC = InputSpec(codebook_sizes=(9, 5, 4), query_vocab_size=50, user_vocab_size=20, context_vocab_size=10)
CLICK, CART, ORDER = 1, 2, 3


def _fusion() -> ActionFusion:
    torch.manual_seed(0)
    fusion = ActionFusion(CONFIG, SPEC.n_actions, 2).eval()
    for p in fusion.parameters():  # away from the init's near-constant outputs
        p.data.add_(0.3 * torch.randn_like(p))
    return fusion


def _behaviour():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 32, generator=g)
    real = torch.ones(2, 6, dtype=torch.bool)
    action = torch.tensor([[CLICK, CLICK, CART, CLICK, ORDER, CLICK], [CLICK, CLICK, CLICK, CLICK, CLICK, CLICK]])
    return x, real, action


def test_a_query_reads_only_the_positions_of_its_own_action():
    fusion = _fusion()
    x, real, action = _behaviour()
    out, _ = fusion(x, real, action)
    moved = x.clone()
    # The one cart position of request 0, moved along a random direction: a constant shift of every
    # dimension would be undone by the layer norm and leave only rounding noise to detect.
    moved[0, 2] += 5.0 * torch.randn(32, generator=torch.Generator().manual_seed(9))
    out_moved, _ = fusion(moved, real, action)
    cart = (fusion.query_action == CART).nonzero()[:, 0]
    others = (fusion.query_action != CART).nonzero()[:, 0]
    assert not torch.allclose(out_moved[0, cart], out[0, cart])
    torch.testing.assert_close(out_moved[0, others], out[0, others])
    torch.testing.assert_close(out_moved[1], out[1])


def test_an_action_never_taken_gives_masked_zero_tokens():
    x, real, action = _behaviour()
    out, mask = _fusion()(x, real, action)
    assert out.shape == (2, SPEC.n_actions * 2, 32)
    expected = torch.stack([torch.isin(_fusion().query_action, a[r]) for a, r in zip(action, real)])
    assert torch.equal(mask, expected)
    assert torch.equal(mask[1], _fusion().query_action == CLICK)  # request 1 only clicked
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask])) and torch.isfinite(out).all()
    real[0, 4] = False  # the order position is padding: its queries read nothing
    _, mask = _fusion()(x, real, action)
    assert not mask[0, _fusion().query_action == ORDER].any()


def test_a_search_model_reads_the_fused_tokens_and_decodes_the_same_items_through_fast_decoder():
    torch.manual_seed(0)
    model = GenerativeModel(CONFIG, SPEC).eval()
    plain = GenerativeModel(replace(CONFIG, action_fusion=0), SPEC).eval()
    batch = EncoderBatch.random(SPEC, 6, torch.Generator().manual_seed(3))
    memory, _, _ = model.encode_memory(batch)
    plain_memory, _, _ = plain.encode_memory(batch)
    assert memory.shape[1] == plain_memory.shape[1] + SPEC.n_actions * CONFIG.action_fusion
    rng = np.random.default_rng(0)
    codes = np.unique(np.stack([rng.integers(0, v, 60) for v in SPEC.codebook_sizes], 1), axis=0)
    trie = PrefixTrie.from_codes(codes, np.arange(1, len(codes) + 1), codebook_sizes=list(SPEC.codebook_sizes))
    with torch.no_grad():
        items, _ = constrained_beam_search(model, model.encode(batch), trie, beams=5, k=5)
        fast = FastDecoder(model, "fp32")
        fast_items, _ = constrained_beam_search(fast, fast.encode(batch), trie, beams=5, k=5)
    assert torch.equal(items, fast_items)
    codes_target = torch.stack([torch.randint(0, v, (6,)) for v in SPEC.codebook_sizes], 1)
    model.train()
    model.loss(batch, codes_target).backward()
    assert model.action_fusion is not None
    assert all(p.grad is not None for p in model.action_fusion.parameters())
