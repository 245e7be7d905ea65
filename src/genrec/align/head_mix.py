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
the search mix (`GenerativeConfig.item_head_text_match`), and given the catalogue's
keyword index the weight of a search's BM25 keyword score
(`GenerativeConfig.keyword_match`, `genrec.model.keywords`): a grid over all three,
on the same beams.

A search's text lookahead (`genrec.decode.lookahead`) is different: it changes which
items the beam search finds, so `choose_search_scoring` decodes the validation
searches once per lookahead weight and runs that grid on each weight's beams. The
weights are chosen together because they trade against each other: a keyword or
text term that lifts long-tail items in the final order matters more when the
lookahead has brought more of them into the beams. Chosen one after the other (the
grid on unguided beams, then the lookahead) they reached validation search
Recall@10 0.4724 on the demo's model; chosen together 0.4786 without keywords.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from genrec.decode.beam_search import constrained_beam_search
from genrec.decode.lookahead import ItemLookahead
from genrec.eval.metrics import ndcg_at_k, recall_at_k
from genrec.model.item_head import can_match_text
from genrec.model.keywords import KeywordIndex
from genrec.model.retriever import GenerativeRetriever, history_mask
from genrec.retrieval import Request


class MixCandidate(NamedTuple):
    """One candidate setting and its validation scores (None: the task had no request)."""

    mix: float
    text_match: float
    keyword_match: float
    search_recall: float | None
    rec_ndcg: float | None


@dataclass(frozen=True)
class MixChoice:
    """The chosen mixes (None: the task had no validation request, keep the model's) and every candidate's score."""

    rec_mix: float | None
    search_mix: float | None
    table: list[MixCandidate]
    search_text_match: float = 0.0
    search_keyword_match: float = 0.0


def choose_head_mixes(model, encoder, trie, requests: list[Request], targets: np.ndarray, beams: int,
                      candidates: tuple[float, ...], batch_size: int = 256,
                      text_matches: tuple[float, ...] = (0.0,), keywords: KeywordIndex | None = None,
                      keyword_matches: tuple[float, ...] = (0.0,), text_lookahead: float = 0.0) -> MixChoice:
    """The best of `candidates` for searches and for recommendations on `requests` with `targets` `[n]`,
    and for searches the best text-match weight of `text_matches` and keyword weight of
    `keyword_matches` with it (only 0 is tried for a model that cannot match text: no text-aware
    head, or no query vectors; and for keywords without a `keywords` index), on the beams a
    search with `text_lookahead` finds.

    Ties go to the smaller mix, then the smaller weights (the beams' own order is the simpler model).
    """
    if model.item_head is None:
        raise ValueError("choosing the item head's mix needs a model with an item head")
    if not candidates or min(candidates) < 0:
        raise ValueError(f"head mix candidates must be ≥ 0 and at least one, got {candidates}")
    if not text_matches or min(text_matches) < 0:
        raise ValueError(f"text-match candidates must be ≥ 0 and at least one, got {text_matches}")
    if not keyword_matches or min(keyword_matches) < 0:
        raise ValueError(f"keyword-match candidates must be ≥ 0 and at least one, got {keyword_matches}")
    with_text = can_match_text(model)
    if not with_text:
        text_matches = (0.0,)
    if keywords is None:
        keyword_matches = (0.0,)
    items, beam_scores, head_scores, cosines = beams_and_head_scores(model, encoder, trie, requests, beams,
                                                                     batch_size, with_text=with_text,
                                                                     text_lookahead=text_lookahead)
    lexical = (keywords.scores([r.query for r in requests], items) if keywords is not None
               else np.zeros(items.shape, np.float32))
    is_search = np.asarray([r.is_search for r in requests], dtype=bool)
    table = []
    for mix in sorted(candidates):
        for weight in sorted(text_matches):
            for keyword in sorted(keyword_matches):
                ranked = ranked_by(items, beam_scores + weight * cosines + keyword * lexical, head_scores, mix, 10)
                search = float(recall_at_k(ranked[is_search], targets[is_search], 10).mean) if is_search.any() else None
                first = weight == min(text_matches) and keyword == min(keyword_matches)
                rec = (float(ndcg_at_k(ranked[~is_search], targets[~is_search], 10).mean)  # no query: weights move nothing
                       if (~is_search).any() and first else None)
                table.append(MixCandidate(float(mix), float(weight), float(keyword), search, rec))
    search_best = _best(table, lambda row: row.search_recall)
    rec_best = _best(table, lambda row: row.rec_ndcg)
    return MixChoice(None if rec_best is None else rec_best.mix, None if search_best is None else search_best.mix,
                     table, 0.0 if search_best is None else search_best.text_match,
                     0.0 if search_best is None else search_best.keyword_match)


def _best(table: list[MixCandidate], score) -> MixCandidate | None:
    scored = [row for row in table if score(row) is not None]
    if not scored:
        return None
    return max(scored, key=lambda row: (score(row), -row.mix, -row.text_match, -row.keyword_match))


def beams_and_head_scores(model, encoder, trie, requests: list[Request], beams: int, batch_size: int = 256,
                          with_text: bool = False, text_lookahead: float = 0.0,
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every request's `beams` items `[n, beams]` (-1 = none), their beam and item-head log-probs
    (head scores 0 for a model without a head: its beams' own order is then the only one), and
    with `with_text` the query–item text cosines (`ItemHead.text_match`; else 0).

    The candidates are the ones the model serves: with its `item_head_candidates` the head's most
    likely items follow the beams (`GenerativeRetriever.with_head_candidates`, more columns), and
    with its `exclude_history` a request's history items get beam score -inf (never ranked).

    With `text_lookahead` > 0 (a model that can match text) searches are decoded as
    `GenerativeRetriever(text_lookahead=…)` decodes them; the beam scores are still the unguided
    log-probs."""
    model.eval()
    head = getattr(model, "item_head", None)
    if text_lookahead and not can_match_text(model):
        raise ValueError("text_lookahead needs a text-aware item head and a model that reads query vectors")
    lookahead = None
    if text_lookahead:
        assert head is not None  # can_match_text
        lookahead = ItemLookahead.from_trie(trie, head.text)
    served = GenerativeRetriever(model, encoder, trie, beams=beams, item_head_text_match=0.0, text_lookahead=0.0,
                                 keyword_match=0.0)  # candidates and history as the model's config serves them
    pooled = head is not None and served.item_head_candidates > 0
    items, beam_scores, head_scores, cosines = [], [], [], []
    with torch.no_grad():
        for start in range(0, len(requests), batch_size):
            chunk = requests[start:start + batch_size]
            batch = encoder.transform(chunk)
            state = model.encode(batch)
            guide = None
            if lookahead is not None and batch.query_vector is not None:
                guide = lookahead.text_guide(batch.query_vector, torch.tensor([r.is_search for r in chunk]),
                                             text_lookahead)
            found, scores = constrained_beam_search(model, state, trie, beams, beams, guide=guide)
            if guide is not None:
                scores = scores - guide.item_total(found)
            if pooled and head is not None:
                found, scores = served.with_head_candidates(state, head, found, scores)
            if served.exclude_history:
                scores = scores + history_mask(chunk, found)
            items.append(found.numpy())
            beam_scores.append(scores.float().numpy())
            head_scores.append(np.zeros(found.shape, np.float32) if head is None
                               else head.score(state.summary, found).numpy())
            cosines.append(head.text_match(batch.query_vector, found).numpy()
                           if with_text and head is not None and batch.query_vector is not None
                           else np.zeros(found.shape, np.float32))
    return np.concatenate(items), np.concatenate(beam_scores), np.concatenate(head_scores), np.concatenate(cosines)


def ranked_by(items: np.ndarray, beam_scores: np.ndarray, head_scores: np.ndarray, mix: float, k: int) -> np.ndarray:
    """`[n, k]` item ids by beam score + mix × head score (-1 = none, or a -inf score: always last)."""
    combined = np.where(items >= 0, beam_scores + mix * head_scores, -np.inf)
    order = np.argsort(-combined, axis=1, kind="stable")[:, :k]
    ranked = np.take_along_axis(items, order, axis=1)
    return np.where(np.take_along_axis(combined, order, axis=1) > -np.inf, ranked, -1)



@dataclass(frozen=True)
class SearchScoring:
    """What `choose_search_scoring` chose: the mixes, text-match and keyword weights (`choice`, on
    the chosen lookahead's beams), the text-lookahead weight, and each lookahead's best search Recall@10."""

    choice: MixChoice
    text_lookahead: float
    lookahead_table: list[tuple[float, float]]


def choose_search_scoring(model, encoder, trie, requests: list[Request], targets: np.ndarray, beams: int,
                          candidates: tuple[float, ...], text_matches: tuple[float, ...] = (0.0,),
                          text_lookaheads: tuple[float, ...] = (0.0,), keywords: KeywordIndex | None = None,
                          keyword_matches: tuple[float, ...] = (0.0,), batch_size: int = 256) -> SearchScoring:
    """`choose_head_mixes` on all `requests`, and again on the searches alone with each text-lookahead
    weight of `text_lookaheads` > 0 (a model that cannot match text, or requests without a search, try
    only 0); the lookahead whose best grid point has the highest search Recall@10 wins (ties: the
    smaller weight) with that grid point. The recommendation mix comes from the first pass
    (a recommendation has no query, so the lookahead never touches it)."""
    if not text_lookaheads or min(text_lookaheads) < 0:
        raise ValueError(f"text-lookahead candidates must be ≥ 0 and at least one, got {text_lookaheads}")
    is_search = np.asarray([r.is_search for r in requests], dtype=bool)

    def grid(requests: list[Request], targets: np.ndarray, text_lookahead: float) -> MixChoice:
        return choose_head_mixes(model, encoder, trie, requests, targets, beams, candidates, batch_size, text_matches,
                                 keywords, keyword_matches, text_lookahead)

    first = grid(requests, targets, 0.0)
    if not is_search.any() or not can_match_text(model):
        return SearchScoring(first, 0.0, [])
    searches = [r for r, search in zip(requests, is_search) if search]
    by_weight = {0.0: first}
    for weight in sorted({float(w) for w in text_lookaheads} - {0.0}):
        by_weight[weight] = grid(searches, targets[is_search], weight)
    table = [(weight, _best_search(choice)) for weight, choice in sorted(by_weight.items())
             if weight in text_lookaheads]  # 0 is always decoded, for the recommendation mix
    best = max(table, key=lambda row: (row[1], -row[0]))[0]
    chosen = by_weight[best]
    choice = MixChoice(first.rec_mix, chosen.search_mix, chosen.table, chosen.search_text_match,
                       chosen.search_keyword_match)
    return SearchScoring(choice, best, table)


def _best_search(choice: MixChoice) -> float:
    return max(row.search_recall for row in choice.table if row.search_recall is not None)
