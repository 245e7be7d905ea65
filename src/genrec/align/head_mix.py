"""The item head's mix per task, chosen on validation once alignment has changed the head.

A model with an item head serves `beam log-prob + mix × item log-prob`
(`genrec.model.item_head`). The mix that was right for the trained model is not
the one that is right after alignment: distillation teaches the head the
teacher's order among look-alike items, so it deserves more weight, and searches
and recommendations lean on it differently (on the default world a search wants
about twice the weight a recommendation does). So the align stage ends by
decoding its validation requests once and scoring every candidate mix on the same
beams (a mix changes only the order of what beam search found, never what it
found), separately for requests with and without a query.

Each task is judged by its part of the balanced selection metric: search by
Recall@10, recommendation by NDCG@10. A model whose head reads item text and whose
encoder reads query vectors also gets a search's text-match weight chosen here, with
the search mix (`GenerativeConfig.item_head_text_match`): a grid over both, on the
same beams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genrec.decode.beam_search import constrained_beam_search
from genrec.eval.metrics import ndcg_at_k, ranked_matrix, recall_at_k
from genrec.model.item_head import can_match_text
from genrec.retrieval import Request


@dataclass(frozen=True)
class MixChoice:
    """The chosen mixes (None: the task had no validation request, keep the model's) and every candidate's score."""

    rec_mix: float | None
    search_mix: float | None
    table: list[tuple[float, float, float | None, float | None]]
    """(mix, text-match weight, search Recall@10, recommendation NDCG@10) per candidate pair"""
    search_text_match: float = 0.0


def choose_head_mixes(model, encoder, trie, requests: list[Request], targets: np.ndarray, beams: int,
                      candidates: tuple[float, ...], batch_size: int = 256,
                      text_matches: tuple[float, ...] = (0.0,)) -> MixChoice:
    """The best of `candidates` for searches and for recommendations on `requests` with `targets` `[n]`,
    and for searches the best text-match weight of `text_matches` with it (only 0 is tried for a
    model that cannot match text: no text-aware head, or no query vectors).

    Ties go to the smaller mix, then the smaller weight (the beams' own order is the simpler model).
    """
    if model.item_head is None:
        raise ValueError("choosing the item head's mix needs a model with an item head")
    if not candidates or min(candidates) < 0:
        raise ValueError(f"head mix candidates must be ≥ 0 and at least one, got {candidates}")
    if not text_matches or min(text_matches) < 0:
        raise ValueError(f"text-match candidates must be ≥ 0 and at least one, got {text_matches}")
    with_text = can_match_text(model)
    if not with_text:
        text_matches = (0.0,)
    items, beam_scores, head_scores, cosines = beams_and_head_scores(model, encoder, trie, requests, beams,
                                                                     batch_size, with_text=with_text)
    is_search = np.asarray([r.is_search for r in requests], dtype=bool)
    table = []
    for mix in sorted(candidates):
        for weight in sorted(text_matches):
            ranked = ranked_by(items, beam_scores + weight * cosines, head_scores, mix, 10)
            search = float(recall_at_k(ranked[is_search], targets[is_search], 10).mean) if is_search.any() else None
            rec = (float(ndcg_at_k(ranked[~is_search], targets[~is_search], 10).mean)  # no query: weight moves nothing
                   if (~is_search).any() and weight == min(text_matches) else None)
            table.append((float(mix), float(weight), search, rec))
    search_best, rec_best = _best(table, 2), _best(table, 3)
    return MixChoice(None if rec_best is None else rec_best[0], None if search_best is None else search_best[0],
                     table, 0.0 if search_best is None else search_best[1])


def _best(table: list[tuple], column: int) -> tuple | None:
    scored = [row for row in table if row[column] is not None]
    if not scored:
        return None
    return max(scored, key=lambda row: (row[column], -row[0], -row[1]))


def beams_and_head_scores(model, encoder, trie, requests: list[Request], beams: int, batch_size: int = 256,
                          with_text: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every request's `beams` items `[n, beams]` (-1 = none), their beam and item-head log-probs
    (head scores 0 for a model without a head: its beams' own order is then the only one), and
    with `with_text` the query–item text cosines (`ItemHead.text_match`; else 0)."""
    model.eval()
    head = getattr(model, "item_head", None)
    items, beam_scores, head_scores, cosines = [], [], [], []
    with torch.no_grad():
        for start in range(0, len(requests), batch_size):
            batch = encoder.transform(requests[start:start + batch_size])
            state = model.encode(batch)
            found, scores = constrained_beam_search(model, state, trie, beams, beams)
            items.append(found.numpy())
            beam_scores.append(scores.float().numpy())
            head_scores.append(np.zeros(found.shape, np.float32) if head is None
                               else head.score(state.summary, found).numpy())
            cosines.append(head.text_match(batch.query_vector, found).numpy()
                           if with_text and head is not None and batch.query_vector is not None
                           else np.zeros(found.shape, np.float32))
    return np.concatenate(items), np.concatenate(beam_scores), np.concatenate(head_scores), np.concatenate(cosines)


def ranked_by(items: np.ndarray, beam_scores: np.ndarray, head_scores: np.ndarray, mix: float, k: int) -> np.ndarray:
    """`[n, k]` item ids by beam score + mix × head score (-1 = none, always last)."""
    combined = np.where(items >= 0, beam_scores + mix * head_scores, -np.inf)
    order = np.argsort(-combined, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(items, order, axis=1)



def choose_text_lookahead(model, encoder, trie, requests: list[Request], targets: np.ndarray, beams: int,
                          candidates: tuple[float, ...], batch_size: int = 256) -> tuple[float, list[tuple[float, float]]]:
    """The text-lookahead weight of `candidates` (`genrec.decode.lookahead`) with the best Recall@10
    on `requests`' searches, served as the model's config says otherwise, and every candidate's
    Recall@10; ties go to the smaller weight. A model without searches here, or that cannot match
    text, keeps 0 (and nothing is decoded).

    Unlike a mix, a lookahead changes which items the beam search finds, so each candidate
    decodes the searches anew (through `GenerativeRetriever`, exactly as they would be served)."""
    from genrec.model.retriever import GenerativeRetriever

    if not candidates or min(candidates) < 0:
        raise ValueError(f"text-lookahead candidates must be ≥ 0 and at least one, got {candidates}")
    is_search = np.asarray([r.is_search for r in requests], dtype=bool)
    if not is_search.any() or not can_match_text(model):
        return 0.0, []
    searches = [r for r, s in zip(requests, is_search) if s]
    table = []
    for weight in sorted(set(candidates)):
        retriever = GenerativeRetriever(model, encoder, trie, beams=beams, batch_size=batch_size,
                                        text_lookahead=weight)
        ranked = ranked_matrix(retriever.retrieve(searches, 10), 10)
        table.append((float(weight), float(recall_at_k(ranked, targets[is_search], 10).mean)))
    best = max(table, key=lambda row: (row[1], -row[0]))
    return best[0], table
