"""A tiny untrained generative model over the small world's catalogue, for tests that compare two ways
of decoding it (the model's own search against `FastDecoder`, in process against served)."""

from __future__ import annotations

import numpy as np
import torch

from genrec.decode.trie import PrefixTrie
from genrec.model.config import GenerativeConfig, InputSpec
from genrec.model.inputs import RequestEncoder
from genrec.model.model import GenerativeModel


def tiny_generative(small_world, seed: int, decoder_scale: float = 1.0):
    """(model, encoder, trie): 4 levels of 8 codes numbering the items in id order, d_model 32.

    `decoder_scale` > 1 sharpens the decoder's logits, so beams separate and a decoding
    difference changes the answer instead of hiding in near-ties."""
    items = small_world.dataset.items.sort_values("item_id")
    item_ids = items["item_id"].to_numpy()
    index = np.arange(len(item_ids))
    codes = np.stack([(index // 8 ** (3 - level)) % 8 for level in range(4)], axis=1)
    spec = InputSpec(codebook_sizes=(8, 8, 8, 8), query_vocab_size=64, user_vocab_size=64)
    config = GenerativeConfig(item_head=False, d_model=32, n_heads=2, d_ff=64, dropout=0.0, max_short=4, max_long=4)
    torch.manual_seed(seed)
    model = GenerativeModel(config, spec).eval()
    if decoder_scale != 1.0:
        with torch.no_grad():
            for p in model.decoder.parameters():
                p.mul_(decoder_scale)
    encoder = RequestEncoder(config, spec, item_ids, codes).fit(list(items["title"]))
    trie = PrefixTrie.from_codes(codes, item_ids, list(spec.codebook_sizes))
    return model, encoder, trie
