"""Trie-constrained decoding: a model-agnostic step protocol, the prefix trie, vectorized beam search."""

from genrec.decode.protocol import BOS_TOKEN, BeamSearchModel, TablePrefixState, TableStepModel

__all__ = ["BOS_TOKEN", "BeamSearchModel", "TablePrefixState", "TableStepModel"]
