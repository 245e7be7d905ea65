"""Trie-constrained decoding: a model-agnostic step protocol, the prefix trie, vectorized beam search."""

from genrec.decode.beam_search import constrained_beam_search
from genrec.decode.exhaustive import exhaustive_search
from genrec.decode.protocol import BOS_TOKEN, BeamSearchModel, TablePrefixState, TableStepModel, state_rows
from genrec.decode.trie import PrefixTrie

__all__ = [
    "BOS_TOKEN",
    "BeamSearchModel",
    "PrefixTrie",
    "TablePrefixState",
    "TableStepModel",
    "constrained_beam_search",
    "exhaustive_search",
    "state_rows",
]
