"""What every Semantic ID tokenizer shares: the scikit-learn shape and input checks.

A tokenizer maps item vectors `[n, d]` to codes `[n, levels + 1]`: `levels`
semantic levels (coarse to fine) plus the disambiguation level of
`genrec.sid.codebook`. Subclasses learn in `_fit` and quantize in
`_semantic_codes` (which also returns the distances to the last level's codes,
so `spread_last_level` can re-assign it); learned state ends in `_` and exists
only after `fit`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from genrec.artifacts import atomic_path
from genrec.sid.codebook import adaptive_codebook_size, append_disambiguation_level, spread_last_level


class SidTokenizer:
    """Base class: `fit(vectors)`, `transform(vectors)`, `fit_transform`, `save`, `load`."""

    levels: int
    codebook_size: int | None
    seed: int
    spread_last_level: bool

    def fit(self, vectors: np.ndarray) -> "SidTokenizer":
        """Learn the codebooks from item vectors `[n, d]` (float, finite)."""
        x = check_vectors(vectors)
        self._check_params()
        self.codebook_size_ = self.codebook_size or adaptive_codebook_size(len(x), self.levels)
        self.dim_ = int(x.shape[1])
        self._fit(x)
        self.disambiguation_size_ = int(self.transform(x)[:, -1].max()) + 1
        return self

    def transform(self, vectors: np.ndarray, parents: np.ndarray | None = None) -> np.ndarray:
        """Codes int64 `[n, levels + 1]`; rows sharing a semantic prefix are numbered
        0, 1, … in row order in the last column, so full SIDs are unique within the call.

        With `spread_last_level`, siblings under one parent prefix avoid each other's
        last-level codes where the codebook allows (see `genrec.sid.codebook`); like
        the disambiguation level, this depends on which rows are coded together.

        `parents` int `[n, P]`: levels decided before this tokenizer's (the attribute
        prefix of `genrec.sid.prefix`). They are prepended to the codes, `[n, P +
        levels + 1]`, and count as part of the parent prefix when spreading and
        disambiguating, so siblings are the items of one prefix group."""
        self._check_fitted()
        x = check_vectors(vectors, dim=self.dim_)
        codes, last_distances = self._semantic_codes(x)
        if parents is not None:
            parents = np.asarray(parents, dtype=np.int64)
            if parents.ndim != 2 or len(parents) != len(x):
                raise ValueError(f"parents must be [n={len(x)}, P], got shape {parents.shape}")
            codes = np.concatenate([parents, codes], axis=1)
        if self.spread_last_level:
            codes[:, -1] = spread_last_level(codes[:, :-1], last_distances)
        return append_disambiguation_level(codes)

    def fit_transform(self, vectors: np.ndarray) -> np.ndarray:
        return self.fit(vectors).transform(vectors)

    def residual(self, vectors: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """What the semantic codes leave unexplained: `vectors [n, d]` minus their reconstruction
        from `codes [n, levels]` (this tokenizer's semantic levels, as `transform` chose them,
        without parents or disambiguation), float32 `[n, d]`. The learned last level
        (`genrec.sid.last_level`) quantizes it."""
        self._check_fitted()
        x = check_vectors(vectors, dim=self.dim_)
        codes = np.asarray(codes, dtype=np.int64)
        if codes.shape != (len(x), self.levels):
            raise ValueError(f"codes must be [n={len(x)}, levels={self.levels}], got shape {codes.shape}")
        return (x - self._reconstruct(codes)).astype(np.float32)

    @property
    def codebook_sizes_(self) -> list[int]:
        """Vocabulary size per level, the disambiguation level (as fitted) last."""
        self._check_fitted()
        return [int(self.codebook_size_)] * self.levels + [int(self.disambiguation_size_)]

    def save(self, path: str | os.PathLike) -> None:
        """Write hyper-parameters and learned arrays to one `.npz` file, atomically."""
        self._check_fitted()
        # Values typed Any: numpy's `savez` stub would otherwise match `**arrays` against its bool `allow_pickle`.
        arrays: dict[str, Any] = {name: np.asarray(value) for name, value in self._learned_arrays().items()}
        state = {
            "class": type(self).__name__,
            "params": self.get_params(),
            "codebook_size_": int(self.codebook_size_),
            "dim_": self.dim_,
            "disambiguation_size_": self.disambiguation_size_,
            **self._learned_scalars(),
        }
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, __state__=np.asarray(json.dumps(state)), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SidTokenizer":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"path {str(path)!r} is not a file; expected a tokenizer saved with .save(path)")
        with np.load(path, allow_pickle=False) as data:
            state = json.loads(str(data["__state__"]))
            arrays = {name: data[name] for name in data.files if name != "__state__"}
        if state["class"] != cls.__name__:
            raise ValueError(f"path {str(path)!r} holds a {state['class']}; expected a {cls.__name__}")
        tokenizer = cls(**state.pop("params"))
        state.pop("class")
        tokenizer.codebook_size_ = state.pop("codebook_size_")
        tokenizer.dim_ = state.pop("dim_")
        tokenizer.disambiguation_size_ = state.pop("disambiguation_size_")
        tokenizer._restore(arrays, state)
        return tokenizer

    def get_params(self) -> dict[str, Any]:
        raise NotImplementedError

    # ----- subclass hooks ------------------------------------------------------------------
    def _fit(self, x: np.ndarray) -> None:
        raise NotImplementedError

    def _semantic_codes(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(codes int64 `[n, levels]`, squared distances to the last level's codes `[n, K]`)."""
        raise NotImplementedError

    def _learned_arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _reconstruct(self, codes: np.ndarray) -> np.ndarray:
        """Vectors `[n, d]` (input space) the semantic `codes [n, levels]` stand for."""
        raise NotImplementedError

    def _learned_scalars(self) -> dict[str, Any]:
        return {}

    def _restore(self, arrays: dict[str, np.ndarray], scalars: dict[str, Any]) -> None:
        raise NotImplementedError

    def _check_params(self) -> None:
        if not isinstance(self.levels, (int, np.integer)) or self.levels < 1:
            raise ValueError(f"levels must be an integer ≥ 1, got {self.levels!r}")
        if self.codebook_size is not None and (not isinstance(self.codebook_size, (int, np.integer)) or self.codebook_size < 2):
            raise ValueError(f"codebook_size must be None (adaptive) or an integer ≥ 2, got {self.codebook_size!r}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "dim_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit(vectors) first")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def check_vectors(vectors: Any, dim: int | None = None) -> np.ndarray:
    """Validate item vectors at the door: a finite float array `[n ≥ 1, d]` → float32."""
    try:
        x = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"vectors must be a numeric array [n, d]; could not convert: {error}") from None
    if x.ndim != 2:
        raise ValueError(f"vectors must be 2-d [n, d], got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"vectors must have at least one row and one column, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"vectors has {x.shape[1]} columns; expected {dim}, the width seen in fit")
    if not np.isfinite(x).all():
        raise ValueError("vectors holds NaN or infinite values; expected finite numbers")
    return np.ascontiguousarray(x)
