"""Behaviour-derived user-ID tokens (`genrec.model.user_ids`): the position-weighted majority code of
each SID level over the short and long views — a deterministic function of the history that padding
does not change and a different history does — read in search's user part."""

import torch

from genrec.model import EncoderBatch, GenerativeConfig, GenerativeModel, InputSpec
from genrec.model.user_ids import BehaviourUserIds, behaviour_codes

SPEC = InputSpec(codebook_sizes=(9, 5, 4), query_vocab_size=50, user_vocab_size=20, context_vocab_size=10)


def test_the_newest_items_weigh_most_and_padding_is_not_counted():
    # one user, level 0 codes oldest → newest: 3, 3, 7, pad (items 0), 5: weights 1/4, 1/3, 1/2, -, 1
    codes = torch.tensor([[[3], [3], [7], [3], [5]]])
    items = torch.tensor([[11, 12, 13, 0, 14]])
    tokens, real = behaviour_codes(codes, items, 1, (9,))
    assert tokens.tolist() == [[5]] and real.tolist() == [True]  # 5: 1 > 3: 1/4 + 1/3 > 7: 1/2
    codes[0, 0, 0] = codes[0, 1, 0] = codes[0, 3, 0] = 7  # 7 now has 1/4 + 1/3 + 1/2 > 1
    assert behaviour_codes(codes, items, 1, (9,))[0].tolist() == [[7]]
    empty, none = behaviour_codes(codes, torch.zeros_like(items), 1, (9,))
    assert empty.tolist() == [[0]] and none.tolist() == [False]


def test_user_id_tokens_are_a_deterministic_function_of_the_history():
    ids = BehaviourUserIds(16, 2, SPEC.codebook_sizes)
    batch = EncoderBatch.random(SPEC, 6, torch.Generator().manual_seed(0))
    codes, real = ids.tokens(batch, 10, 10)
    again, _ = ids.tokens(EncoderBatch.random(SPEC, 6, torch.Generator().manual_seed(0)), 10, 10)
    assert codes.shape == (6, 4) and torch.equal(codes, again)
    # padded positions' codes are not read
    padded = batch.short_items == 0
    batch.short_codes[padded] = (batch.short_codes[padded] + 1) % 4
    assert torch.equal(ids.tokens(batch, 10, 10)[0], codes)
    # a different history: the newest short item's level-0 code repeated everywhere wins level 0
    batch.short_items[0] = torch.arange(1, batch.short_items.shape[1] + 1)
    batch.short_codes[0, :, 0] = 8
    changed, _ = ids.tokens(batch, 10, 10)
    assert changed[0, 0] == 8 and not torch.equal(changed, codes) and torch.equal(changed[1:], codes[1:])
    assert real.all()


def test_a_search_model_reads_the_tokens_in_its_user_part_and_a_different_history_changes_its_memory():
    torch.manual_seed(0)
    config = GenerativeConfig(item_head=False, d_model=32, n_heads=4, d_ff=48, dropout=0.0)
    plain = GenerativeModel(config, SPEC).eval()
    model = GenerativeModel(GenerativeConfig(**{**config.to_dict(), "user_id_levels": 2}), SPEC).eval()
    assert plain.user_ids is None
    batch = EncoderBatch.random(SPEC, 4, torch.Generator().manual_seed(1))
    memory, _, _ = model.encode_memory(batch)
    assert memory.shape[1] == plain.encode_memory(batch)[0].shape[1] + 2 * 2
    torch.testing.assert_close(model.encode_memory(batch)[0], memory)  # deterministic
    codes = torch.stack([torch.randint(0, v, (4,)) for v in SPEC.codebook_sizes], dim=1)
    model.train()
    model.loss(batch, codes).backward()
    assert model.user_ids is not None and model.user_ids.slot.weight.grad is not None
    assert model.user_ids.slot.weight.grad.abs().sum() > 0
