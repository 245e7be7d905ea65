"""LLM4PR: post-ranking with a language model that also reads the ranker's heterogeneous features.

LLM4PR (`SYSTEMS.md`) re-orders a ranked list with a language model. Text alone
(the query, the item title) is what a language model reads natively; the
ranker's evidence — its click / cart / order probabilities, the list position,
popularity, who is asking — is not text. Three parts bridge that here, with the
MiniLM encoder the project already ships as the language model:

* **Query-instructed adapter** (`QueryInstructedAdapter`): the features become
  `adapter_tokens` soft tokens in MiniLM's hidden space; the tokens then attend
  to the request's own text (the query, or the titles of the newest history
  items for a recommendation), so what the features mean is read in the light
  of what was asked.
* **Feature adaptation** (stage 1): the adapter alone (the language model
  frozen) is trained so that the language model's pooled state of the soft
  tokens matches its pooled state of the *same features written out as text*
  ("rank 3, click 0.12, …") — the soft tokens land where the language model
  already understands such statements.
* **Learning to post-rank** (stage 2): the adapter, the top `trainable_layers`
  of MiniLM and a score head are trained on whole lists: the main task is a
  list-wise softmax over the request's candidates (the item the user took is
  the label), the auxiliary task a pairwise logistic loss between that item and
  each other candidate (`auxiliary_weight`).

MiniLM reads each (request text, item title) pair as one sequence with the soft
tokens after `[CLS]`. Its lower layers are frozen, so their states are computed
once per pair (`encode_pairs`) and only the top layers run in training. The
post-ranker works on any retriever's top `candidates` (`LLM4PRRetriever`): the
cascade's here, the generative model's just as well.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrec.eval.metrics import ndcg_at_k
from genrec.retrieval import Ranked, Request, Retriever

FEATURES: tuple[str, ...] = ("position", "base score", "p_click", "p_cart", "p_order", "log popularity",
                             "history length", "search")
"""The heterogeneous features of one candidate, in `candidate_features` column order."""


@dataclass(frozen=True)
class LLM4PRConfig:
    """Shape and training of the post-ranker."""

    candidates: int = 10
    adapter_tokens: int = 4
    trainable_layers: int = 1
    max_text_tokens: int = 12
    max_title_tokens: int = 20
    adaptation_epochs: int = 2
    epochs: int = 6
    lr: float = 5e-4
    auxiliary_weight: float = 0.5
    batch_lists: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("candidates", "adapter_tokens", "trainable_layers", "max_text_tokens", "max_title_tokens",
                     "epochs", "batch_lists"):
            if getattr(self, name) < 1:
                raise ValueError(f"LLM4PRConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.candidates < 2:
            raise ValueError(f"LLM4PRConfig.candidates must be ≥ 2 (a list to re-order), got {self.candidates}")
        if self.adaptation_epochs < 0 or self.auxiliary_weight < 0 or self.lr <= 0:
            raise ValueError("LLM4PRConfig: adaptation_epochs and auxiliary_weight must be ≥ 0 and lr > 0")


@dataclass
class EncodedLists:
    """Candidate lists with MiniLM's frozen lower-layer states of each (request text, title) pair.

    `states` `[lists, k, tokens, dim]`, `mask` `[lists, k, tokens]` (True: a real token), `features`
    `[lists, k, F]`, `item_ids` `[lists, k]` (0 where a list is shorter than k)."""

    states: Tensor
    mask: Tensor
    features: Tensor
    item_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.item_ids)


class QueryInstructedAdapter(nn.Module):
    """Features `[n, F]` → soft tokens `[n, m, dim]` that have attended to the request text `[n, T, dim]`."""

    def __init__(self, n_features: int, tokens: int, dim: int, heads: int = 4):
        super().__init__()
        self.tokens = tokens
        self.project = nn.Sequential(nn.Linear(n_features, dim), nn.GELU(), nn.Linear(dim, tokens * dim))
        self.attend = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, features: Tensor, text: Tensor | None = None, text_mask: Tensor | None = None) -> Tensor:
        soft = self.project(features).view(len(features), self.tokens, -1)
        if text is None:
            return self.norm(soft)
        instructed, _ = self.attend(soft, text, text, key_padding_mask=None if text_mask is None else ~text_mask)
        return self.norm(soft + instructed)


class PostRankScorer(nn.Module):
    """The adapter, a trainable copy of MiniLM's top layers, and a score head."""

    def __init__(self, top_layers: Sequence[nn.Module], n_features: int, tokens: int, dim: int):
        super().__init__()
        self.adapter = QueryInstructedAdapter(n_features, tokens, dim)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for layer in top_layers)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 1))

    def pooled(self, states: Tensor, mask: Tensor, soft: Tensor) -> Tensor:
        """Mean-pooled top-layer output `[n, dim]` of `[CLS] soft tokens rest-of-sequence`."""
        x = torch.cat([states[:, :1], soft, states[:, 1:]], dim=1)
        keep = torch.cat([mask[:, :1], torch.ones(soft.shape[:2], dtype=torch.bool, device=soft.device), mask[:, 1:]], 1)
        additive = torch.zeros(keep.shape, dtype=x.dtype, device=x.device).masked_fill(~keep, -1e4)[:, None, None, :]
        for layer in self.layers:
            out = layer(x, attention_mask=additive)
            x = out[0] if isinstance(out, tuple) else out
        weight = keep.to(x.dtype)[..., None]
        return (x * weight).sum(1) / weight.sum(1)

    def forward(self, states: Tensor, mask: Tensor, features: Tensor) -> Tensor:
        """Scores `[n]` of candidates given their pair states `[n, T, dim]`, `mask` `[n, T]`, features `[n, F]`."""
        soft = self.adapter(features, states, mask)
        return self.head(self.pooled(states, mask, soft)).squeeze(-1)


class LanguageModel:
    """MiniLM split where the post-ranker's trainable part begins: frozen lower layers, the top ones to copy."""

    def __init__(self, encoder: Any, trainable_layers: int):
        self.tokenizer = encoder.tokenizer
        self.bert = encoder[0].auto_model.eval()
        n_layers = len(self.bert.encoder.layer)
        if trainable_layers >= n_layers:
            raise ValueError(f"trainable_layers must be < the language model's {n_layers} layers, got {trainable_layers}")
        self.frozen = n_layers - trainable_layers
        self.top_layers = list(self.bert.encoder.layer[self.frozen:])
        self.dim = int(self.bert.config.hidden_size)

    @torch.no_grad()
    def lower_states(self, first: list[str], second: list[str] | None, max_length: int) -> tuple[Tensor, Tensor]:
        """States after the frozen layers `[n, T, dim]` and real-token mask `[n, T]` of texts (or text pairs)."""
        batch = self.tokenizer(first, second, padding="max_length", truncation=True, max_length=max_length,
                               return_tensors="pt")
        # bf16 matrix products: about 3x faster on CPUs with AVX-512 BF16 / AMX; these states are frozen
        # inputs to the trained layers, not outputs anyone compares bit for bit
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            token_type_ids=batch.get("token_type_ids"), output_hidden_states=True)
        return out.hidden_states[self.frozen].float(), batch["attention_mask"].bool()

    @torch.no_grad()
    def sentence(self, texts: list[str], max_length: int = 32) -> Tensor:
        """The whole frozen model's mean-pooled states `[n, dim]` (the adaptation step's targets)."""
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        hidden = self.bert(**batch).last_hidden_state
        weight = batch["attention_mask"][..., None].float()
        return (hidden * weight).sum(1) / weight.sum(1)


def features_as_text(features: np.ndarray) -> list[str]:
    """Each candidate's features written out, what the adaptation step aligns the soft tokens with."""
    return [f"rank {int(round(f[0]))}, score {f[1]:.2f}, click {f[2]:.2f}, cart {f[3]:.2f}, order {f[4]:.2f}, "
            f"popularity {f[5]:.1f}, history {int(round(f[6]))}, {'search' if f[7] > 0.5 else 'recommendation'}"
            for f in features]


class LLM4PR:
    """The post-ranker: `fit` on candidate lists whose taken item is known, `score` new lists.

    Learned: the scorer's weights, the feature normalisation `mean_` / `scale_`, and `valid_ndcg_`
    (the selection lists' NDCG@10 after each epoch, when `fit` is given them)."""

    def __init__(self, language_model: LanguageModel, config: LLM4PRConfig = LLM4PRConfig()):
        self.language_model = language_model
        self.config = config
        torch.manual_seed(config.seed)
        self.scorer = PostRankScorer(language_model.top_layers, len(FEATURES), config.adapter_tokens, language_model.dim)
        self.mean_ = torch.zeros(len(FEATURES))
        self.scale_ = torch.ones(len(FEATURES))

    def _normalised(self, features: Tensor) -> Tensor:
        return (features - self.mean_) / self.scale_

    def adapt(self, lists: EncodedLists) -> list[float]:
        """Stage 1: the adapter learns to say in soft tokens what the features say in words. Losses per epoch.

        It also fixes the feature normalisation (`mean_`, `scale_`) from these lists, with or without
        adaptation epochs, so `fit` starts here."""
        flat_features = lists.features.reshape(-1, len(FEATURES))
        real = torch.from_numpy(lists.item_ids.reshape(-1) > 0)
        flat_features = flat_features[real]
        self.mean_, self.scale_ = flat_features.mean(0), flat_features.std(0).clamp_min(1e-3)
        if not self.config.adaptation_epochs:
            return []
        targets = self.language_model.sentence(features_as_text(flat_features.numpy()))
        cls = lists.states[:, :, :1].reshape(-1, 1, self.language_model.dim)[real]
        optimizer = torch.optim.Adam(self.scorer.adapter.parameters(), lr=self.config.lr)
        generator = torch.Generator().manual_seed(self.config.seed)
        losses = []
        frozen = list(self.scorer.layers.parameters())
        for p in frozen:
            p.requires_grad_(False)
        for _ in range(self.config.adaptation_epochs):
            total = 0.0
            for batch in torch.randperm(len(targets), generator=generator).split(256):
                soft = self.scorer.adapter(self._normalised(flat_features[batch]))
                pooled = self.scorer.pooled(cls[batch], torch.ones(len(batch), 1, dtype=torch.bool), soft)
                loss = 1 - F.cosine_similarity(pooled, targets[batch], dim=1).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            losses.append(total / len(targets))
        for p in frozen:
            p.requires_grad_(True)
        return losses

    def fit(self, lists: EncodedLists, labels: np.ndarray, valid: EncodedLists | None = None,
            valid_labels: np.ndarray | None = None) -> "LLM4PR":
        """Stage 2 on lists `labels` `[lists]` (the position of the taken item in each list, −1: not in it,
        skipped). With `valid`, the epoch of the best validation NDCG@10 is kept (`valid_ndcg_` per epoch)."""
        keep = np.flatnonzero(labels >= 0)
        if not len(keep):
            raise ValueError("no list holds its label; LLM4PR needs lists where the taken item is a candidate")
        self.adapt(lists)
        optimizer = torch.optim.Adam(self.scorer.parameters(), lr=self.config.lr)
        generator = torch.Generator().manual_seed(self.config.seed)
        label_t = torch.from_numpy(labels)
        self.valid_ndcg_: list[float] = []
        best, best_state = -math.inf, copy.deepcopy(self.scorer.state_dict())
        for _ in range(self.config.epochs):
            self.scorer.train()
            for batch in torch.from_numpy(keep)[torch.randperm(len(keep), generator=generator)].split(self.config.batch_lists):
                scores = self._list_scores(lists, batch)
                real = torch.from_numpy(lists.item_ids[batch.numpy()] > 0)
                scores = scores.masked_fill(~real, -1e4)
                target = label_t[batch]
                loss = F.cross_entropy(scores, target)
                if self.config.auxiliary_weight:
                    positive = scores.gather(1, target[:, None])
                    others = real.clone()
                    others[torch.arange(len(batch)), target] = False
                    pairwise = F.softplus(scores - positive)[others].mean()
                    loss = loss + self.config.auxiliary_weight * pairwise
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if valid is not None and valid_labels is not None:
                ndcg = float(list_ndcg(self.score(valid), valid.item_ids, valid_labels).mean())
                self.valid_ndcg_.append(ndcg)
                if ndcg > best:
                    best, best_state = ndcg, copy.deepcopy(self.scorer.state_dict())
        if valid is not None:
            self.scorer.load_state_dict(best_state)
        self.scorer.eval()
        return self

    def _list_scores(self, lists: EncodedLists, batch: Tensor) -> Tensor:
        states, mask, features = lists.states[batch], lists.mask[batch], lists.features[batch]
        b, k = features.shape[:2]
        flat = self.scorer(states.reshape(b * k, *states.shape[2:]).float(), mask.reshape(b * k, -1),
                           self._normalised(features.reshape(b * k, -1)))
        return flat.view(b, k)

    @torch.no_grad()
    def score(self, lists: EncodedLists) -> np.ndarray:
        """Post-rank scores `[lists, k]` (−inf where a list is shorter than k)."""
        self.scorer.eval()
        out = []
        for batch in torch.arange(len(lists)).split(64):
            out.append(self._list_scores(lists, batch).numpy())
        scores = np.concatenate(out) if out else np.zeros((0, lists.item_ids.shape[1]))
        return np.where(lists.item_ids > 0, scores, -np.inf)


def list_ndcg(scores: np.ndarray, item_ids: np.ndarray, labels: np.ndarray, k: int = 10) -> np.ndarray:
    """NDCG@k `[lists]` of ordering each list `item_ids` `[lists, m]` by `scores`, the taken item at
    position `labels` (−1: not in the list, 0) — the harness's `ndcg_at_k` on the re-ordered ids."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(item_ids, order, axis=1)
    rows = np.arange(len(labels))
    targets = np.where(labels >= 0, item_ids[rows, np.maximum(labels, 0)], -1)
    return ndcg_at_k(ranked, targets, k).values


def request_text(request: Request, titles: dict[int, str], history_items: int = 3) -> str:
    """What the adapter is instructed by: the query, or the newest history titles for a recommendation."""
    if request.query:
        return request.query
    recent = [titles.get(int(i), "") for i in list(request.history)[-history_items:]][::-1]
    return "; ".join(t for t in recent if t) or "recommendation"


def encode_lists(language_model: LanguageModel, requests: Sequence[Request], ranked: Sequence[Ranked],
                 features: np.ndarray, titles: dict[int, str], config: LLM4PRConfig) -> EncodedLists:
    """Pair states of the top `config.candidates` of each answer; `features` `[lists, k, F]`."""
    k = config.candidates
    item_ids = np.zeros((len(ranked), k), dtype=np.int64)
    for row, answer in enumerate(ranked):
        item_ids[row, : min(k, len(answer.item_ids))] = answer.item_ids[:k]
    texts = [request_text(r, titles) for r in requests]
    firsts = [texts[row] for row in range(len(ranked)) for _ in range(k)]
    seconds = [titles.get(int(i), "") for i in item_ids.reshape(-1)]
    length = 3 + config.max_text_tokens + config.max_title_tokens
    states, masks = [], []
    for start in range(0, len(firsts), 512):
        s, m = language_model.lower_states(firsts[start:start + 512], seconds[start:start + 512], length)
        states.append(s.to(torch.bfloat16))
        masks.append(m)
    dim = language_model.dim
    return EncodedLists(torch.cat(states).view(len(ranked), k, length, dim), torch.cat(masks).view(len(ranked), k, length),
                        torch.as_tensor(features, dtype=torch.float32), item_ids)


class LLM4PRRetriever:
    """Any retriever's top `candidates`, re-ordered by a fitted `LLM4PR`; the rest of its list follows."""

    def __init__(self, base: Retriever, post_ranker: LLM4PR, titles: dict[int, str], featurize: Any):
        self.base, self.post_ranker, self.titles, self.featurize = base, post_ranker, titles, featurize
        self.name = f"{getattr(base, 'name', 'retriever')}+llm4pr"

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        depth = max(k, self.post_ranker.config.candidates)
        ranked = self.base.retrieve(requests, depth)
        lists = encode_lists(self.post_ranker.language_model, requests, ranked, self.featurize(requests, ranked),
                             self.titles, self.post_ranker.config)
        scores = self.post_ranker.score(lists)
        out = []
        for row, answer in enumerate(ranked):
            n = min(self.post_ranker.config.candidates, len(answer.item_ids))
            order = np.argsort(-scores[row, :n], kind="stable")
            ids = np.r_[answer.item_ids[:n][order], answer.item_ids[n:]][:k]
            out.append(Ranked(ids.astype(np.int64), np.arange(len(ids), 0, -1, dtype=np.float32)))
        return out


def candidate_features(cascade: Any, requests: Sequence[Request], ranked: Sequence[Ranked], popularity: np.ndarray,
                       k: int) -> np.ndarray:
    """`FEATURES` of each answer's top `k` `[lists, k, F]`: its position and score in the answer, the cascade
    ranker's P(click), P(cart), P(order) (`cascade` a `CascadeRetriever`), the item's log popularity
    (`popularity` `[max item id + 1]` training interactions), the history length, whether it is a search."""
    out = np.zeros((len(ranked), k, len(FEATURES)), dtype=np.float32)
    rows, items = [], []
    for row, answer in enumerate(ranked):
        n = min(k, len(answer.item_ids))
        scores = np.asarray(answer.scores[:n], dtype=np.float32)
        out[row, :n, 0] = np.arange(1, n + 1)
        out[row, :n, 1] = scores - scores[0] if n else scores
        out[row, :n, 5] = np.log1p(popularity[answer.item_ids[:n]])
        out[row, :, 6] = min(len(requests[row].history), 50)
        out[row, :, 7] = float(bool(requests[row].query))
        rows.extend([row] * n)
        items.extend(answer.item_ids[:n].tolist())
    if items:
        model = cascade.model
        probs = model.ranker.predict_proba(model.space.requests(requests), np.asarray(rows), np.asarray(items, np.int64))
        position = np.concatenate([np.arange(min(k, len(a.item_ids))) for a in ranked])
        out[np.asarray(rows), position, 2:5] = probs
    return out
