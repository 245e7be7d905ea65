"""The Query-Former (`genrec.model.query_former`): M learned queries replace the long history by M
tokens. It is a set function of the positions it reads (order reaches it only through the inputs'
position and recency embeddings), padding never changes its output, and a search model with it on
reads M long tokens whatever the history's length."""

import torch

from genrec.model import EncoderBatch, GenerativeConfig, GenerativeModel, InputSpec
from genrec.model.query_former import QueryFormer

CONFIG = GenerativeConfig(item_head=False, d_model=32, n_heads=4, d_ff=48, dropout=0.0, long_queries=3)
SPEC = InputSpec(codebook_sizes=(9, 5, 4), query_vocab_size=50, user_vocab_size=20, context_vocab_size=10)


def _former(seed: int = 0) -> QueryFormer:
    torch.manual_seed(seed)
    former = QueryFormer(CONFIG, 3).eval()
    for p in former.parameters():  # away from the init's near-constant outputs
        p.data.add_(0.3 * torch.randn_like(p))
    return former


def _long(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 7, 32, generator=g)
    real = torch.rand(4, 7, generator=g) < 0.6
    real[:, 0] = True
    real[3] = False  # a request with no long-term item
    return x, real


def test_the_output_is_m_tokens_of_width_d_masked_only_where_the_history_is_empty():
    x, real = _long()
    out, mask = _former()(x, real)
    assert out.shape == (4, 3, 32) and mask.shape == (4, 3)
    assert mask[:3].all() and not mask[3].any()
    assert torch.equal(out[3], torch.zeros(3, 32)) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # different histories, different tokens


def test_permuting_the_long_positions_with_their_mask_leaves_the_output_unchanged():
    former = _former()
    x, real = _long()
    out, _ = former(x, real)
    order = torch.randperm(7, generator=torch.Generator().manual_seed(3))
    permuted, _ = former(x[:, order], real[:, order])
    torch.testing.assert_close(permuted, out)


def test_padded_positions_do_not_change_the_output():
    former = _former()
    x, real = _long()
    out, _ = former(x, real)
    noisy = torch.where(real[..., None], x, 100.0 * torch.randn_like(x))
    torch.testing.assert_close(former(noisy, real)[0], out)
    wider = torch.cat([torch.randn(4, 5, 32), x], dim=1)  # more (left) padding
    torch.testing.assert_close(former(wider, torch.cat([torch.zeros(4, 5, dtype=torch.bool), real], dim=1))[0], out)


def test_a_search_model_reads_m_long_tokens_whatever_the_historys_length_and_trains():
    torch.manual_seed(0)
    spec = SPEC
    batch = EncoderBatch.random(spec, 4, torch.Generator().manual_seed(0))
    plain = GenerativeModel(GenerativeConfig(item_head=False, d_model=32, n_heads=4, d_ff=48, dropout=0.0, max_long=40), spec).eval()
    model = GenerativeModel(GenerativeConfig(item_head=False, d_model=32, n_heads=4, d_ff=48, dropout=0.0, max_long=40,
                                             long_queries=3), spec).eval()
    assert plain.long_former is None and not any(k.startswith("long_former") for k in plain.state_dict())
    long = batch.long_items.shape[1]
    memory, _, _ = model.encode_memory(batch)
    full, _, _ = plain.encode_memory(batch)
    assert memory.shape[1] == full.shape[1] - long + 3
    # The long view's order reaches the Query-Former through the position embeddings: reversing it changes the memory.
    flipped = EncoderBatch(**{**batch.__dict__, **{name: getattr(batch, name).flip(1) for name in
                                                   ("long_codes", "long_items", "long_action", "long_recency")}})
    assert not torch.allclose(model.encode_memory(flipped)[0], memory)
    model.train()
    codes = torch.stack([torch.randint(0, v, (4,)) for v in spec.codebook_sizes], dim=1)
    loss = model.loss(batch, codes)
    loss.backward()
    assert model.long_former is not None and model.long_former.queries.grad is not None
    assert model.long_former.queries.grad.abs().sum() > 0
