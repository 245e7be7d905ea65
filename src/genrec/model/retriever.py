"""`GenerativeRetriever`: requests in, items out, by generating Semantic IDs.

Per batch of requests: build the encoder tensors (`RequestEncoder`; a model that
reads query vectors runs MiniLM on each distinct query once), encode once,
then `constrained_beam_search` decodes `levels` steps for all requests and beams
at once under the catalog's prefix trie, so every answer is a real item and no
item appears twice. Search (a query) and recommendation (no query) go through
the same weights in the same batch.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Self, Sequence

import numpy as np
import torch

from genrec.artifacts import MissingStageError, code_fingerprint, warn_if_trained_by_other_code
from genrec.data.dataset import Dataset
from genrec.data.splits import Split
from genrec.decode.beam_search import constrained_beam_search
from genrec.decode.lookahead import ItemLookahead, LookaheadGuide
from genrec.decode.score import sid_log_probs
from genrec.decode.trie import PrefixTrie
from genrec.model.batches import EncoderBatch
from genrec.model.checkpoint import load_model
from genrec.model.inference import FastDecoder
from genrec.model.inputs import RequestEncoder
from genrec.model.item_head import ItemHead, can_match_text
from genrec.model.keywords import FILE as KEYWORDS_FILE
from genrec.model.keywords import KeywordIndex
from genrec.model.model import GenerativeModel
from genrec.retrieval import Ranked, Request
from genrec.sid.table import SidTable

MODEL_DIR = ("train", "generative")
GENERATIVE_CODE: tuple[str, ...] = ("genrec.model", "genrec.train")
"""The packages whose source decides what the generative model learns; its manifest records their hash
(`code`), so the demo retrains a model cached by older code and `GenerativeRetriever.from_run` says so."""


class GenerativeRetriever:
    """Trie-constrained beam search over a trained `GenerativeModel`.

    `beams` is the beam width (raised to k when k is larger: a beam search
    cannot return more items than beams), but never past `max_beams`: a served
    k=1000 would otherwise run a 1000-beam search, so such a request gets the
    best `max_beams` items instead. `batch_size` requests are decoded together.

    `precision` None decodes with the model's own code (bit for bit what training
    evaluated); "fp32" or "bf16" decodes with a `FastDecoder` copy of it
    (`genrec.model.inference`): "fp32" returns the same items, faster; "bf16" is
    faster still on CPUs with bf16 arithmetic but may reorder near-tied items.
    Such a retriever serves the weights it was built with, so it also keeps the item
    head's catalogue vectors from its first call (`keep_item_vectors`); build it after training.

    `prune_margin` (nats; None, the default, is off) drops a beam after any level
    once it is that far below its request's best beam, so later levels decode
    fewer rows (`genrec.decode.pruning`); it trades a little recall for
    throughput (benchmarks/results/decode_pruning.md). It needs a `precision`:
    the `FastDecoder` steps ragged rows, the model's own decoding does not.

    A model with an item head (`GenerativeConfig.item_head`) re-ranks all its beams
    by beam log-prob + `item_head_mix` × the head's item log-prob before cutting to
    k (`item_head_search_mix` for requests with a query, when the model or the caller
    sets one); `item_head_mix` set here overrides the model's (None: the model's; 0: the
    beams' own order). A search also adds `item_head_text_match` (None: the model's) × the cosine
    of its query's and each beam item's text vectors (`ItemHead.text_match`).

    `text_lookahead` (≥ 0; 0 is off; None: the model's `item_head_text_lookahead`) lets a
    search's query text steer the beam search itself (`genrec.decode.lookahead`): each prefix is kept or dropped by its log-prob
    plus this weight × the best query–item cosine still reachable below it, so items the query
    describes can reach the beams; the scores they are finally ranked by are unchanged.

    `keyword_match` (≥ 0; None: the model's `keyword_match`) adds to a search's served score
    that weight × the BM25 score of its query's words in each beam item's text
    (`genrec.model.keywords`); it needs `keywords`, the index `load` finds beside the model
    (`keywords.npz`, written by `genrec align`).

    `item_head_candidates` (≥ 0; None: the model's) adds to each request's beams the item head's
    that-many most likely items not already among them, each scored as a beam would be (its SID's
    log-prob by teacher forcing, `genrec.decode.score`) before the head re-ranks them all: beam
    search prunes by the SID's prefixes alone, and the head can be sure of an item it pruned.

    `exclude_history` (None: the model's `exclude_history`) removes each request's own history
    items from its beams before the cut to k, so an answer holds no item the user already has;
    the answer is shorter than k only when fewer than k of the `beams` candidates are new.
    """

    name = "generative"

    def __init__(self, model: GenerativeModel, encoder: RequestEncoder, trie: PrefixTrie,
                 beams: int = 20, batch_size: int = 256, max_beams: int = 256, precision: str | None = None,
                 prune_margin: float | None = None, item_head_mix: float | None = None,
                 item_head_search_mix: float | None = None, item_head_text_match: float | None = None,
                 text_lookahead: float | None = None, keywords: KeywordIndex | None = None,
                 keyword_match: float | None = None, exclude_history: bool | None = None,
                 item_head_candidates: int | None = None):
        if not 1 <= beams <= max_beams:
            raise ValueError(f"beams must be in 1..max_beams ({max_beams}), got {beams}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        if trie.levels != model.spec.levels:
            raise ValueError(f"trie has {trie.levels} levels but the model decodes {model.spec.levels}")
        if prune_margin is not None and not prune_margin >= 0:  # `not >=` also refuses NaN
            raise ValueError(f"prune_margin must be ≥ 0 or None, got {prune_margin}")
        if prune_margin is not None and precision is None:
            raise ValueError("prune_margin needs precision 'fp32' or 'bf16' (the FastDecoder steps the "
                             "ragged rows pruning leaves; the model's own decoding does not)")
        if item_head_mix is not None and not item_head_mix >= 0:
            raise ValueError(f"item_head_mix must be ≥ 0 or None, got {item_head_mix}")
        if item_head_search_mix is not None and not item_head_search_mix >= 0:
            raise ValueError(f"item_head_search_mix must be ≥ 0 or None, got {item_head_search_mix}")
        if item_head_text_match is not None and not item_head_text_match >= 0:
            raise ValueError(f"item_head_text_match must be ≥ 0 or None, got {item_head_text_match}")
        self.model = model.eval()
        self.prune_margin = prune_margin
        self.item_head_text_match = (model.config.item_head_text_match if item_head_text_match is None
                                     else item_head_text_match)
        if self.item_head_text_match and not can_match_text(model):
            raise ValueError("item_head_text_match needs a text-aware item head and a model that reads query "
                             "vectors (InputSpec.query_vector_dim > 0)")
        if text_lookahead is None:
            text_lookahead = float(getattr(model.config, "item_head_text_lookahead", 0.0))
        if not text_lookahead >= 0:
            raise ValueError(f"text_lookahead must be ≥ 0, got {text_lookahead}")
        if text_lookahead and not can_match_text(model):
            raise ValueError("text_lookahead needs a text-aware item head and a model that reads query vectors "
                             "(InputSpec.query_vector_dim > 0)")
        self.text_lookahead = text_lookahead
        if keyword_match is None:
            keyword_match = float(getattr(model.config, "keyword_match", 0.0))
        if not keyword_match >= 0:
            raise ValueError(f"keyword_match must be ≥ 0, got {keyword_match}")
        if keyword_match and keywords is None:
            raise ValueError(f"keyword_match ({keyword_match}) needs a keyword index: the {KEYWORDS_FILE} that "
                             "genrec align writes beside the model (GenerativeRetriever.load reads it)")
        self.keyword_match = keyword_match
        self.keywords = keywords
        if item_head_candidates is None:
            item_head_candidates = int(getattr(model.config, "item_head_candidates", 0))
        if item_head_candidates < 0:
            raise ValueError(f"item_head_candidates must be ≥ 0, got {item_head_candidates}")
        if item_head_candidates and model.item_head is None:
            raise ValueError("item_head_candidates needs a model with an item head")
        self.item_head_candidates = item_head_candidates
        self.exclude_history = bool(getattr(model.config, "exclude_history", False) if exclude_history is None
                                    else exclude_history)
        self._lookahead: ItemLookahead | None = None
        self.item_head_mix = model.config.item_head_mix if item_head_mix is None else item_head_mix
        self.item_head_search_mix = (item_head_search_mix if item_head_search_mix is not None
                                     else model.config.item_head_search_mix)
        self.encoder = encoder
        self.trie = trie
        self.beams = beams
        self.batch_size = batch_size
        self.max_beams = max_beams
        self.precision = precision
        self.decoder: GenerativeModel | FastDecoder = (self.model if precision is None
                                                       else FastDecoder(self.model, precision))
        self.keep_item_vectors = precision is not None
        self._item_vectors: torch.Tensor | None = None

    def with_precision(self, precision: str) -> Self:
        """The same model, encoder, trie and every scoring setting, decoding with a `FastDecoder` of
        `precision`: a copy, so a setting added to the constructor is carried without being listed here."""
        twin = copy.copy(self)
        twin.precision = precision
        twin.decoder = FastDecoder(self.model, precision)
        twin.keep_item_vectors = True  # the FastDecoder's weights are fixed: see `_head_vectors`
        twin._item_vectors = None
        return twin

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        if k < 1:
            raise ValueError(f"k must be ≥ 1, got {k}")
        for i, r in enumerate(requests):
            if not isinstance(r, Request):
                raise ValueError(f"requests[{i}] must be a genrec.retrieval.Request, got {type(r).__name__}")
        if self.prune_margin is not None and self.decoder is self.model:
            raise ValueError("prune_margin needs precision 'fp32' or 'bf16' (set at construction)")
        beams = min(max(self.beams, k), self.max_beams)
        k = min(k, beams)
        head = self._head()
        device = next(self.model.parameters()).device
        out: list[Ranked] = []
        with torch.no_grad():
            for start in range(0, len(requests), self.batch_size):
                chunk = requests[start:start + self.batch_size]
                batch = self.encoder.transform(chunk).to(device)
                state = self.decoder.encode(batch)
                guide = self._guide(batch, chunk, device)
                keywords = self.keyword_match > 0 and any(r.is_search for r in chunk)
                reorder = head is not None or guide is not None or keywords or self.exclude_history
                found, found_scores = constrained_beam_search(self.decoder, state, self.trie, beams,
                                                              beams if reorder else k,
                                                              prune_margin=self.prune_margin, guide=guide)
                if guide is not None:  # the lookahead chose the beams; the ranking is the unguided score's
                    found_scores = found_scores - guide.item_total(found)
                if head is not None and self.item_head_candidates:
                    found, found_scores = self.with_head_candidates(state, head, found, found_scores)
                bonus = self._bonus(batch, chunk, found)
                if self.exclude_history:
                    owned = history_mask(chunk, found)
                    bonus = owned if bonus is None else bonus + owned
                if head is not None:  # every beam is a candidate; the item head reorders them
                    if state.summary is None:
                        raise ValueError("the decoder's encode() gave no summary for the item head to score")
                    found, found_scores = head.rerank(state.summary, found, found_scores, self._mixes(chunk, device),
                                                      k, bonus, self._head_vectors(head))
                elif reorder:
                    top = torch.topk(found_scores if bonus is None else found_scores + bonus, k, dim=1)
                    found, found_scores = found.gather(1, top.indices), top.values
                items, scores = found.cpu().numpy(), found_scores.cpu().numpy()
                for row in range(len(chunk)):
                    real = (items[row] >= 0) & (scores[row] > -np.inf)  # -inf: no item, or a history item left out
                    out.append(Ranked(items[row][real], scores[row][real]))
        return out

    def score(self, requests: Sequence[Request], item_ids: np.ndarray) -> np.ndarray:
        """`[len(requests), m]` the score `retrieve` ranks by, for given items `[len(requests), m]`.

        The SID's sequence log-prob (`genrec.decode.score`) plus, with an item head, the
        same mix × the head's log-prob (and text match on searches) as `retrieve` adds, so
        candidates from elsewhere rank on one scale with the beams. Items need a SID."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        if item_ids.ndim != 2 or len(item_ids) != len(requests):
            raise ValueError(f"item_ids must have shape [{len(requests)}, m], got {list(item_ids.shape)}")
        known = self.encoder.known_item
        inside = (item_ids >= 0) & (item_ids < len(known))
        if not bool(np.all(inside)) or not bool(known[item_ids].all()):
            raise ValueError("every item to score must be a catalogue item with a SID")
        head = self._head()
        device = next(self.model.parameters()).device
        out = np.empty(item_ids.shape, dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(requests), self.batch_size):
                chunk = requests[start:start + self.batch_size]
                items = torch.from_numpy(item_ids[start:start + len(chunk)]).to(device)
                batch = self.encoder.transform(chunk).to(device)
                state = self.decoder.encode(batch)
                codes = torch.from_numpy(self.encoder.code_of_item[item_ids[start:start + len(chunk)]])
                scores = sid_log_probs(self.decoder, state, self.trie, codes.to(device))
                if head is not None and state.summary is not None:  # what head.rerank adds to a beam's score
                    scores = scores + (self._mixes(chunk, device)[:, None]
                                       * head.score(state.summary, items, self._head_vectors(head)))
                bonus = self._bonus(batch, chunk, items)
                if bonus is not None:
                    scores = scores + bonus
                out[start:start + len(chunk)] = scores.float().cpu().numpy()
        return out

    def with_head_candidates(self, state: Any, head: ItemHead, found: torch.Tensor,
                              found_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The beams `[B, K]` and their scores, followed by the head's `item_head_candidates` most likely
        items (-1 and score -inf where one is already a beam) scored by their SID's log-prob."""
        if state.summary is None:
            raise ValueError("the decoder's encode() gave no summary for the item head to score")
        log_p = head.log_probs(state.summary, self._head_vectors(head))
        top = torch.topk(log_p, min(self.item_head_candidates, int(head.known.sum())), dim=1).indices
        fresh = ~(top[:, :, None] == found[:, None, :]).any(-1)
        codes = torch.from_numpy(self.encoder.code_of_item[top.cpu().numpy()]).to(top.device)
        sid = sid_log_probs(self.decoder, state, self.trie, codes).to(found_scores.dtype)
        return (torch.cat([found, top.masked_fill(~fresh, -1)], 1),
                torch.cat([found_scores, sid.masked_fill(~fresh, float("-inf"))], 1))

    def _head(self) -> ItemHead | None:
        """The item head when any of its terms counts, else None."""
        return (self.model.item_head if max(self.item_head_mix, self.search_mix, self.item_head_text_match) > 0
                else None)

    def _head_vectors(self, head: ItemHead) -> torch.Tensor | None:
        """The head's catalogue item vectors kept from the first call (`keep_item_vectors`), or None
        (the head computes them per call).

        Why: a head that reads item text builds every item's vector with a `[items, text_dim] x
        [text_dim, d]` product, the same for every request, and most of a lone served request's head
        (`benchmarks/results/item_vectors_cache.md`). Only a retriever with a `precision` keeps them:
        its `FastDecoder` is a copy of the weights made at construction, so it already answers with
        the model as it was then; one without (training's evaluation, whose model keeps changing)
        computes them afresh. (Version counters cannot tell: a fused optimizer step writes
        parameters without bumping them.)"""
        if not self.keep_item_vectors:
            return None
        if self._item_vectors is None:
            with torch.no_grad():
                self._item_vectors = head.item_vectors().detach()
        return self._item_vectors

    def _mixes(self, chunk: Sequence[Request], device: torch.device) -> torch.Tensor:
        """`[B]` the head's mix per request: the search mix for a query, the recommendation mix otherwise."""
        return torch.tensor([self.search_mix if r.is_search else self.item_head_mix for r in chunk], device=device)

    def _text_bonus(self, batch: EncoderBatch, items: torch.Tensor) -> torch.Tensor | None:
        """`[B, K]` text-match weight × the query–item cosine (0 for requests without a query), or None."""
        if not self.item_head_text_match or batch.query_vector is None or self.model.item_head is None:
            return None
        return self.item_head_text_match * self.model.item_head.text_match(batch.query_vector, items)

    def _bonus(self, batch: EncoderBatch, chunk: Sequence[Request], items: torch.Tensor) -> torch.Tensor | None:
        """`[B, K]` what a search adds to each item's score beyond the model's log-probs: the
        text-match term plus `keyword_match` × the item's BM25 score for the query (0 for
        requests without a query, and for items -1); None when neither term counts."""
        bonus = self._text_bonus(batch, items)
        if not self.keyword_match or self.keywords is None or not any(r.is_search for r in chunk):
            return bonus
        scores = self.keywords.scores([r.query for r in chunk], items.cpu().numpy())
        keyword = self.keyword_match * torch.from_numpy(scores).to(items.device)
        return keyword if bonus is None else bonus + keyword

    def _guide(self, batch: EncoderBatch, chunk: Sequence[Request], device: torch.device) -> LookaheadGuide | None:
        """The text lookahead of a batch's searches (`genrec.decode.lookahead`); None when it is off or
        the batch has no search."""
        if not self.text_lookahead or batch.query_vector is None or not any(r.is_search for r in chunk):
            return None
        if self._lookahead is None:
            item_head = self.model.item_head
            assert item_head is not None  # can_match_text, checked at construction
            self._lookahead = ItemLookahead.from_trie(self.trie, item_head.text)
        searches = torch.tensor([r.is_search for r in chunk], device=device)
        return self._lookahead.text_guide(batch.query_vector, searches, self.text_lookahead)

    @property
    def search_mix(self) -> float:
        """The item head's mix for requests with a query."""
        return self.item_head_mix if self.item_head_search_mix is None else self.item_head_search_mix

    # ---- loading ----------------------------------------------------------------------

    @classmethod
    def load(cls, folder: str | Path, sids: Any, beams: int | None = None) -> Self:
        """Load `folder` (what `train_generative` wrote) for the SID table it was trained on."""
        folder = Path(folder)
        model, meta = load_model(folder)
        if list(model.spec.codebook_sizes) != [int(v) for v in sids.codebook_sizes]:
            raise ValueError(f"{folder} was trained for codebook sizes {list(model.spec.codebook_sizes)}, "
                             f"the SID table has {list(sids.codebook_sizes)}; retrain the generative model")
        encoder = RequestEncoder(model.config, model.spec, sids.item_ids, sids.codes)
        encoder.load_state(json.loads((folder / "encoder.json").read_text()))
        if encoder.query_vectors is not None:  # load MiniLM now, not inside the first search request
            encoder.query_vectors(["warm up"])
        trie = PrefixTrie.from_codes(sids.codes, sids.item_ids, list(sids.codebook_sizes))
        return cls(model, encoder, trie, beams=beams or int(meta.get("beams", 20)), keywords=KeywordIndex.beside(folder))

    @classmethod
    def from_run(cls, run: str | Path, dataset: Dataset | None = None, split: Split | None = None) -> "GenerativeRetriever":
        """Load `run/train/generative`; never trains (`MissingStageError` names the command
        when the model is absent or its training was interrupted)."""
        folder = Path(run).joinpath(*MODEL_DIR)
        if not (folder / "manifest.json").exists():
            raise MissingStageError(folder, f"genrec train --run {run} --model generative")
        warn_if_other_code(folder)
        return cls.load(folder, SidTable.load(Path(run) / "sid"))


def history_mask(requests: Sequence[Request], items: torch.Tensor) -> torch.Tensor:
    """`[B, K]` -inf where `items [B, K]` is one of its request's history items, else 0."""
    longest = max((len(r.history) for r in requests), default=0)
    history = torch.full((len(requests), max(longest, 1)), -2, dtype=torch.int64)  # -2 matches no slot
    for row, request in enumerate(requests):
        if request.history:
            history[row, :len(request.history)] = torch.as_tensor(request.history, dtype=torch.int64)
    owned = (items[:, :, None] == history.to(items.device)[:, None, :]).any(-1)
    return torch.zeros(items.shape, device=items.device).masked_fill(owned, float("-inf"))


def warn_if_other_code(folder: Path) -> bool:
    """Warn when the model in `folder` was trained by other model or training code; return whether it was.

    The model is kept (a long training run is never thrown away behind the user's back);
    `make demo` retrains instead, since its table must describe the current code.
    """
    return warn_if_trained_by_other_code(
        folder, code_fingerprint(*GENERATIVE_CODE), "genrec.model / genrec.train",
        f"genrec train --run {folder.parent.parent} --model generative --force")
