"""The generative model's two descriptions: what you choose, and what the data gives.

`GenerativeConfig` holds the hyper-parameters — the only values a user or a
benchmark tunes, and the only source of their defaults: `GenerativeConfig()` is
the model `make demo` trains. `InputSpec` holds the shape of the data — codebook
sizes from the SID table, vocabularies from the request encoder, the query
vector's width and the category table from the catalog — filled at training
time and saved beside the weights, never tuned.

Why two: when both sat in one dataclass, training overwrote four "hyper-parameters"
from the data, so a config file could not say what would actually be trained.

`load_model_config` reads what any genrec version saved (a `config.json`'s
"model" entry, plus "inputs" from this version on) and migrates older layouts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from genrec.config_check import build_config

Tasks = Literal["search+recommendation", "recommendation"]
TASKS: tuple[str, ...] = ("search+recommendation", "recommendation")


@dataclass(frozen=True)
class GenerativeConfig:
    """Hyper-parameters; the defaults are the demo's model (~2.7M parameters, minutes on two cores).

    `tasks`: "search+recommendation" answers a request with a query through the full
    encoder (query beside the whole history) and one without through the causal
    encoder, trained on every prefix of each user's history at once; "recommendation"
    has only the causal path (data without queries: Amazon reviews, MovieLens).
    `latest_in_summary`: the causal encoder's newest position joins the decoder's summary
    (SASRec's user vector). `copy_recent`: a recommendation's first-level logits get a
    learned bias on the leaves of its k newest history items (0 = off). `item_buckets`:
    behaviour positions also get a hashed item-id embedding (0 = off).
    `moe_experts`: the decoder blocks' feed-forward becomes a sparse mixture of that many
    experts, `moe_top_k` per token, its load-balancing loss added to training's with weight
    `moe_balance_weight` (0 = the dense MLP; `genrec.model.moe`). `long_queries`: the full
    view reads the long history compressed to that many Query-Former tokens
    (0 = the long view whole; `genrec.model.query_former`). `user_id_levels`: the full view's
    user part also gets behaviour-derived user-ID tokens, the position-weighted majority code
    of each of the first that many SID levels in the short and the long view
    (0 = off; `genrec.model.user_ids`). `action_fusion`: the full view's user part also gets
    that many tokens per action, each a learned query cross-attending to the short and long
    views' positions of its action only (0 = off; `genrec.model.action_fusion`). `rec_long_view`: the recommendation path reads the long
    view too, as tokens every history position sees (compressed by the Query-Former when
    `long_queries` > 0); the long view then holds the `max_long` interactions just *older* than
    the short view, of any action, instead of the newest carts and orders — what a training
    window's long view is (the user's items before the window), and what a long history
    (MovieLens: hundreds of ratings, all one action) adds to the short view.
    `item_head`: a softmax over the catalogue from the decoder's summary, trained beside the
    level losses with weight `item_head_weight`, re-ranks the beams at inference by
    beam log-prob + `item_head_mix` × item log-prob (`genrec.model.item_head`);
    `item_head_text`: its item vectors add a learned map of each item's text vector.
    `item_head_search_mix`: the mix for requests with a query (None: `item_head_mix`); the
    two tasks lean on the head differently, and `genrec align` chooses both on validation.
    `item_head_text_match`: a search's served score also adds this weight × the cosine of its
    query's and each beam item's MiniLM text vectors (`ItemHead.text_match`; needs a text-aware
    head and query vectors; 0 = off), chosen on validation by `genrec align` with the search mix.
    `item_head_text_lookahead`: a search's beam search also looks ahead with this weight × the
    query–item cosine, keeping the prefixes whose items could still match the query
    (`genrec.decode.lookahead`; the final scores are unchanged, only which items survive the
    beam; 0 = off), chosen on validation by `genrec align`.
    `keyword_match`: a search's served score also adds this weight × the BM25 score of its
    query's words in each beam item's text (`genrec.model.keywords`; needs the keyword index the
    align stage saves beside the model; 0 = off), chosen on validation by `genrec align` with
    the search mix and the text-match weight.
    `item_head_candidates`: the item head's that-many most likely catalogue items join each
    request's beams as candidates (those not among them already), scored on the beams' scale
    (their SID's log-prob by teacher forcing, plus the head's term), so an item the head is sure
    of but beam search pruned can still be answered (0 = off; the beams alone).
    `exclude_history`: answers never hold an item of the request's own history (the beams are
    ranked without them), for catalogues where nobody takes an item twice — Amazon Beauty and
    MovieLens, where no training interaction repeats an earlier item of its user
    (`benchmarks/seen_targets.py`), so a history item in an answer is a wasted slot. Off by
    default: on the generated world users do buy again. A serving choice (SASRec's
    `exclude_history`, the harness's `exclude_seen` for every row): training is the same either way.
    `self_distill`: searches are also read as a teacher whose query carries its thought (the
    nearest catalogue items' leaf path and brand, `genrec.model.thoughts`), and the raw-query
    student matches the teacher's distribution with this KL weight (0 = off;
    `genrec.model.self_distill`); serving reads the raw query only.
    `diffusion_steps`: a search's full view also gets one interest token, its history denoised
    toward the query's intent in that many reverse diffusion steps (DiffusionGS; 0 = off;
    `genrec.model.diffusion_interest`), its reconstruction loss weighted by `diffusion_weight`.
    Each choice's evidence: `docs/generative.md`, `benchmarks/results/generative_variants.md`.
    """

    tasks: Tasks = "search+recommendation"
    d_model: int = 128
    n_heads: int = 4
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    d_ff: int = 512
    dropout: float = 0.1
    max_query_tokens: int = 24
    max_user_tokens: int = 8
    max_short: int = 10
    max_long: int = 10
    max_context: int = 8
    item_buckets: int = 0
    latest_in_summary: bool = False
    copy_recent: int = 3
    moe_experts: int = 0
    moe_top_k: int = 2
    moe_balance_weight: float = 0.01
    long_queries: int = 0
    user_id_levels: int = 0
    action_fusion: int = 0
    rec_long_view: bool = False
    item_head: bool = True
    item_head_weight: float = 0.25
    item_head_mix: float = 0.5
    item_head_text: bool = True
    item_head_search_mix: float | None = None
    item_head_text_match: float = 0.0
    item_head_text_lookahead: float = 0.0
    keyword_match: float = 0.0
    item_head_candidates: int = 0
    exclude_history: bool = False
    self_distill: float = 0.0
    diffusion_steps: int = 0
    diffusion_weight: float = 0.1

    def __post_init__(self) -> None:
        if self.tasks not in TASKS:
            raise ValueError(f"tasks must be one of {TASKS}, got {self.tasks!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        for name in ("d_model", "n_heads", "d_ff", "max_query_tokens", "max_user_tokens", "max_short",
                     "max_long", "max_context"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        for name in ("n_encoder_layers", "n_decoder_layers", "item_buckets", "copy_recent", "moe_experts",
                     "long_queries", "user_id_levels", "action_fusion", "diffusion_steps", "item_head_candidates"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.moe_top_k < 1:
            raise ValueError(f"moe_top_k must be ≥ 1, got {self.moe_top_k}")
        if self.moe_experts and self.moe_top_k > self.moe_experts:
            raise ValueError(f"moe_top_k ({self.moe_top_k}) must be ≤ moe_experts ({self.moe_experts}): "
                             "a token cannot be routed to more experts than there are")
        for name in ("item_head_weight", "item_head_mix"):
            if not getattr(self, name) >= 0.0:  # `not >=` also refuses NaN
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        if not self.item_head_text_match >= 0.0:
            raise ValueError(f"item_head_text_match must be ≥ 0, got {self.item_head_text_match}")
        if self.item_head_text_match and not (self.item_head and self.item_head_text):
            raise ValueError("item_head_text_match needs a text-aware item head (item_head and item_head_text true): "
                             "it matches queries against the head's item text vectors")
        if not self.item_head_text_lookahead >= 0.0:
            raise ValueError(f"item_head_text_lookahead must be ≥ 0, got {self.item_head_text_lookahead}")
        if self.item_head_text_lookahead and not (self.item_head and self.item_head_text):
            raise ValueError("item_head_text_lookahead needs a text-aware item head (item_head and item_head_text "
                             "true): it matches queries against the head's item text vectors")
        if self.item_head_candidates and not self.item_head:
            raise ValueError("item_head_candidates needs the item head (item_head true): the head proposes them")
        if not self.keyword_match >= 0.0:
            raise ValueError(f"keyword_match must be ≥ 0, got {self.keyword_match}")
        if self.item_head_search_mix is not None and not self.item_head_search_mix >= 0.0:
            raise ValueError(f"item_head_search_mix must be ≥ 0 or None, got {self.item_head_search_mix}")
        if not self.diffusion_weight >= 0.0:
            raise ValueError(f"diffusion_weight must be ≥ 0, got {self.diffusion_weight}")
        if self.diffusion_steps and self.tasks != "search+recommendation":
            raise ValueError("diffusion_steps needs tasks='search+recommendation': the query is the denoising's "
                             "anchor, and a recommendation-only model reads no query")
        if not self.self_distill >= 0.0:
            raise ValueError(f"self_distill must be ≥ 0, got {self.self_distill}")
        if self.self_distill and self.tasks != "search+recommendation":
            raise ValueError("self_distill needs tasks='search+recommendation': its teacher reads a search's query "
                             "with that query's thought, and a recommendation-only model reads no query")
        if self.moe_balance_weight < 0.0:
            raise ValueError(f"moe_balance_weight must be ≥ 0, got {self.moe_balance_weight}")

    @property
    def search(self) -> bool:
        """Whether the model answers searches (through the full encoder)."""
        return self.tasks == "search+recommendation"

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GenerativeConfig":
        return _from_dict(cls, values)


@dataclass(frozen=True)
class InputSpec:
    """What the data gives the model; `prepare_training` fills it, the weights' folder keeps it.

    `codebook_sizes`: the SID table's, one per level. `*_vocab_size`: the request
    encoder's hashed vocabularies. `query_vector_dim` > 0: one more encoder token, the
    query's sentence vector projected. `n_categories` > 0: behaviour positions also get
    their item's leaf-category embedding, looked up in a table of `n_item_slots` item ids.
    `item_text_dim` > 0: the item head's item vectors read text vectors of that width.
    """

    codebook_sizes: tuple[int, ...] = (64, 64, 64, 8)
    query_vocab_size: int = 8192
    user_vocab_size: int = 4096
    context_vocab_size: int = 256
    n_actions: int = 4
    n_recency: int = 16
    query_vector_dim: int = 0
    n_categories: int = 0
    n_item_slots: int = 0
    item_text_dim: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "codebook_sizes", tuple(int(v) for v in self.codebook_sizes))
        if not self.codebook_sizes or min(self.codebook_sizes) < 1:
            raise ValueError(f"codebook_sizes must be a non-empty tuple of positive ints, got {self.codebook_sizes}")
        for name in ("query_vocab_size", "user_vocab_size", "context_vocab_size", "n_actions", "n_recency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        for name in ("query_vector_dim", "n_categories", "n_item_slots", "item_text_dim"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        if self.n_categories and self.n_item_slots < 1:
            raise ValueError("n_categories > 0 needs n_item_slots ≥ 1 (the size of the item → category table)")

    @property
    def levels(self) -> int:
        return len(self.codebook_sizes)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "InputSpec":
        return _from_dict(cls, values)


def _to_dict(obj: Any) -> dict[str, Any]:
    """Every field, tuples as lists (JSON)."""
    return {f.name: list(v) if isinstance(v := getattr(obj, f.name), tuple) else v for f in fields(obj)}


def _from_dict(cls: Any, values: dict[str, Any]) -> Any:
    """`cls(**values)`, refusing names it does not have (a typo must not be ignored) and values of the wrong type."""
    return build_config(cls, values)


# ---- saved configs of earlier versions -----------------------------------------------------

_SPEC_FIELDS = ("codebook_sizes", "query_vocab_size", "user_vocab_size", "context_vocab_size", "n_actions",
                "n_recency", "query_vector_dim", "n_categories", "n_item_slots", "item_text_dim")
_ADDED_OFF: dict[str, Any] = {
    # field: what its absence from a saved config means (the value before the field existed), where
    # that differs from today's default
    "item_head": False,
    "item_head_text": False,
}
_REMOVED: dict[str, tuple[Any, str]] = {
    # field: (the only value this version can load, why the others were removed)
    "tie_heads": (False, "tied output heads lost on validation"),
    "latest_age": (False, "the newest item's age in the summary lost on validation"),
    "memory_summary": (True, "every model since the causal modes reads the per-part summary"),
    "input_init_std": (1.0, "models since the summary start with loud inputs"),
}


def load_model_config(saved: dict[str, Any], inputs: dict[str, Any] | None = None) -> tuple[GenerativeConfig, InputSpec]:
    """The config and input spec of a saved model: `saved` is a `config.json`'s "model"
    entry and `inputs` its "inputs" entry (absent before the two were split).

    Older layouts are migrated: the data fields move to the spec, the two mode flags
    become `tasks`. A model built with a removed variant cannot be rebuilt by this code
    and is refused with the reason, rather than loaded into a different network.
    """
    saved = dict(saved)
    for name, absent_meant in _ADDED_OFF.items():  # a part added after the save: it had none
        saved.setdefault(name, absent_meant)
    if inputs is None:  # one dataclass held both before
        inputs = {name: saved.pop(name) for name in _SPEC_FIELDS if name in saved}
    if "tasks" in saved:  # this version's layout
        return GenerativeConfig.from_dict(saved), InputSpec.from_dict(inputs)
    legacy_defaults = {"memory_summary": False, "input_init_std": 0.02}  # what a field's absence meant
    for name, (supported, why) in _REMOVED.items():
        value = saved.pop(name, legacy_defaults.get(name, supported))
        if value != supported:
            raise ValueError(f"this model was saved with {name}={value!r}, which genrec no longer builds ({why}); "
                             f"retrain it: genrec train --run RUN --model generative --force")
    history_only = saved.pop("causal_history", False)
    both = saved.pop("causal_recommendation", False)
    if not (history_only or both):
        raise ValueError("this model was saved by the per-request encoder mode, which genrec no longer builds "
                         "(the causal modes beat it on validation); retrain it: "
                         "genrec train --run RUN --model generative --force")
    saved["tasks"] = "recommendation" if history_only else "search+recommendation"
    saved.setdefault("copy_recent", 0)  # its default before it became the demo's
    return GenerativeConfig.from_dict(saved), InputSpec.from_dict(inputs)


__all__ = ["GenerativeConfig", "InputSpec", "Tasks", "TASKS", "load_model_config"]
