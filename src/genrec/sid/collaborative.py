"""The collaborative view of an item: a small vector from which items users take together.

Why. Text vectors put two shampoos of one brand side by side whether or not
anyone buys them together; the generative model, though, is trained on what
users do next. OneMall and QuaSID both ask the tokenizer to see behaviour.
Here an item's collaborative vector is a rank-`dim` factorisation of the
item–item co-occurrence of the TRAINING histories only (`leave_one_out(...).train`,
the events before each user's held-out items, so no validation or test target
leaks into the codes): cosine-normalised co-occurrence within `window` steps
(`genrec.features.cooccurrence`), its top-`dim` eigenvectors (largest eigenvalues:
the symmetric matrix's negative directions would split items bought together) scaled
by √λ, rows L2-normalised.
An item nobody co-occurred with gets the zero vector, so only its text speaks.

`with_collaborative_view` concatenates it to the text vectors with a weight:
distances then add `weight²` × the collaborative distance to the text distance.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh

from genrec.data.dataset import Dataset
from genrec.data.splits import Split, interactions, leave_one_out
from genrec.features.cooccurrence import windowed_cooccurrence

COLLABORATIVE_DIM = 32
COOCCURRENCE_WINDOW = 3


def train_cooccurrence(dataset: Dataset, item_ids: np.ndarray, split: Split | None = None,
                       window: int = COOCCURRENCE_WINDOW) -> sp.csr_matrix:
    """Cosine-normalised co-occurrence `[n, n]` of `item_ids` (in that order) in the training
    part of `split` (default `leave_one_out(dataset.events)`): pairs within `window` steps of one
    user's positive interactions, weighted 1 / gap."""
    split = split if split is not None else leave_one_out(dataset.events)
    item_ids = np.asarray(item_ids, dtype=np.int64)
    train = interactions(split.train)
    slot_of = {int(item): slot for slot, item in enumerate(item_ids.tolist())}
    known = train["item_id"].isin(slot_of)
    slots = train.loc[known, "item_id"].map(slot_of).to_numpy(dtype=np.int64)
    users = train.loc[known, "user_id"].to_numpy()
    return windowed_cooccurrence(users, slots, len(item_ids), window, gap_weight=lambda gap: 1.0 / gap)


def collaborative_vectors(cooccurrence: sp.spmatrix, dim: int = COLLABORATIVE_DIM, seed: int = 0) -> np.ndarray:
    """Unit rows float32 `[n, dim]` from a symmetric co-occurrence `[n, n]` (zero rows for items
    without co-occurrence; fewer than `dim` columns carry signal when the matrix is tiny)."""
    if dim < 1:
        raise ValueError(f"dim must be ≥ 1, got {dim}")
    matrix = sp.csr_matrix(cooccurrence, dtype=np.float64)
    n = matrix.shape[0]
    out = np.zeros((n, dim), dtype=np.float32)
    rank = min(dim, n - 2)
    if rank < 1 or matrix.nnz == 0:
        return out
    start = np.random.default_rng(seed).normal(size=n)
    values, vectors = eigsh(matrix, k=rank, which="LA", v0=start)
    order = np.argsort(-values)
    factors = vectors[:, order] * np.sqrt(np.maximum(values[order], 0.0))[None, :]
    factors *= np.sign(factors[np.abs(factors).argmax(axis=0), np.arange(rank)])[None, :]  # one sign per column
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    out[:, :rank] = np.where(norms > 1e-12, factors / np.maximum(norms, 1e-12), 0.0)
    out[np.asarray(matrix.getnnz(axis=1)) == 0] = 0.0
    return out


def with_collaborative_view(text: np.ndarray, collaborative: np.ndarray, weight: float) -> np.ndarray:
    """`[n, d_text + d_collab]`: the text vectors, then `weight` × the collaborative vectors."""
    if not weight >= 0:
        raise ValueError(f"collaborative_weight must be ≥ 0, got {weight!r}")
    if len(text) != len(collaborative):
        raise ValueError(f"collaborative vectors must have one row per item ({len(text)}), got {len(collaborative)}")
    return np.concatenate([np.asarray(text, np.float32), weight * np.asarray(collaborative, np.float32)], axis=1)
