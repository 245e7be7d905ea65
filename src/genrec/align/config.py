"""`AlignConfig`: everything `align_generative` does, saved inside the aligned model's config.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from genrec.align.rewards import TRAINING_REWARDS
from genrec.align.teachers import TEACHERS
from genrec.config_check import build_config

PHASES: tuple[str, ...] = ("sft", "high_value", "distill", "grpo")
"""The post-training phases, in the order they run; a phase with 0 steps is skipped."""
SELECT_METRICS: tuple[str, ...] = ("ndcg@10", "recall@10", "search_recall@10", "rec_ndcg@10", "balanced")


@dataclass
class AlignConfig:
    """Post-training of a trained generative model.

    Defaults: the demo's schedule, chosen on validation (`benchmarks/results/align.md`):
    the cascade's search lists distilled into the item head alone (200 steps), then
    debiased GRPO 30 steps on the ranker + PARS reward, then the head's mixes per task.

    Examples: the `per_user` newest interactions of each user in split.train, at most
    `max_examples` (seeded sample). Phases, in order (0 steps turns one off):

    * `sft_steps` — SFT on every logged target (clicks, carts, orders alike);
    * `high_value_steps` — SFT on carts and orders only; with `pars_weighted`, every
      example of both SFT phases is weighted by its PARS weight (depth × position);
    * `distill_steps` — list-wise distillation of the `teacher`'s top-`teacher_size` list
      (softmax of its scores / `teacher_temperature`) plus `target_share` on the logged
      target; the teacher is the cascade (its calibrated scores) or the run's SASRec (its
      logits: temperature 1 is its own distribution; `genrec.align.teachers`);
      `teacher_for` = "search" distils search requests only (on recommendation the
      cascade is the weaker model), "all" every request. A model with an item head
      learns the lists in its head, weighted by `head_weight`; `distill_sid` also
      teaches them to the SID path (and the encoder under it). Off by default: on the
      default world that moved the beams and cost recommendation, while the head alone
      learns the teacher's order among the beams without touching them.
      `distill_encoder` lets the head's lists train the encoder too (the summary the head
      reads), with the SID path's NLL of the logged target beside them (`anchor_weight`)
      so the beams stay the model's own. On Amazon Beauty (SASRec's lists, 5,000
      validation users) the head alone took N@10 0.0603 → 0.0657, through the encoder
      0.0675 (`benchmarks/results/align_teacher.md`);
    * `grpo_steps` — GRPO over the policy's `grpo_group` beams per request, rewarded by
      `reward` (one of `TRAINING_REWARDS`; `pars_reward_weight` weighs PARS inside
      "ranker+pars"), with `kl_weight` · KL to the model that entered the phase;
      `debiased` pools the advantage scale over the batch (`genrec.align.objectives`).

    Every `eval_every` steps each phase measures `valid_requests` validation requests (0:
    all of them; a seeded sample otherwise; a small sample makes the choices noisy) (at
    `beams`; None: the beam width the trained model serves with) and
    keeps its best checkpoint by `select_metric` ("balanced" = mean of search Recall@10
    and recommendation NDCG@10); a phase whose best is below the model it started from
    is dropped (validation decides, never test). Last, a model with an item head gets
    its mixes (recommendation, search) chosen from `head_mixes` on the same requests
    (`genrec.align.head_mix`; empty: the trained model's mixes are kept), and with the
    search mix a search's query–item text-match weight from `text_matches` (a model whose
    head reads no text, or that reads no query vectors, keeps 0) and the weight of its BM25
    keyword score from `keyword_matches` (`genrec.model.keywords`: the index is built from the
    run's item texts and saved beside the aligned model; a run without searches keeps 0); then a search's text
    lookahead weight inside the beam search (`genrec.decode.lookahead`) from `text_lookaheads`,
    by the validation searches' Recall@10 (empty: 0, off).

    `exclude_history`, `item_head_candidates` and `item_head_mix` (None: the trained model's)
    are the aligned model's serving settings (`GenerativeConfig`): its validation and
    checkpoint choice measure the answers it will serve with them (the mix until the last
    step re-chooses it from `head_mixes`; a distilled head deserves more weight than the
    trained model's).
    """

    seed: int = 0
    per_user: int = 6
    max_examples: int = 15000
    valid_requests: int = 0
    beams: int | None = None
    select_metric: str = "balanced"
    eval_every: int = 50
    batch_size: int = 64
    lr: float = 2e-3
    sft_steps: int = 0
    high_value_steps: int = 0
    pars_weighted: bool = True
    distill_steps: int = 200
    teacher: str = "cascade"
    teacher_size: int = 10
    teacher_temperature: float = 0.01
    target_share: float = 0.3
    teacher_for: str = "search"
    head_weight: float = 1.0
    distill_sid: bool = False
    distill_encoder: bool = False
    anchor_weight: float = 1.0
    head_mixes: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    text_matches: tuple[float, ...] = (0.0, 4.0, 8.0, 16.0, 32.0)
    keyword_matches: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
    text_lookaheads: tuple[float, ...] = (0.0, 4.0, 8.0)
    distill_batch_size: int = 64
    grpo_steps: int = 30
    grpo_group: int = 8
    grpo_batch_size: int = 32
    grpo_lr: float = 5e-5
    reward: str = "ranker+pars"
    pars_reward_weight: float = 0.1
    kl_weight: float = 0.1
    debiased: bool = True
    dropout: bool = False
    exclude_history: bool | None = None
    item_head_candidates: int | None = None
    item_head_mix: float | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.reward not in TRAINING_REWARDS:
            why = " ('oracle' only measures reward hacking; it never trains the reported model)" \
                if self.reward == "oracle" else ""
            raise ValueError(f"reward must be one of {list(TRAINING_REWARDS)}, got {self.reward!r}{why}")
        if self.select_metric not in SELECT_METRICS:
            raise ValueError(f"select_metric must be one of {list(SELECT_METRICS)}, got {self.select_metric!r}")
        for name in ("sft_steps", "high_value_steps", "distill_steps", "grpo_steps", "valid_requests"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        if self.beams is not None and self.beams < 1:
            raise ValueError(f"beams must be ≥ 1 or None, got {self.beams}")
        if self.head_weight < 0:
            raise ValueError(f"head_weight must be ≥ 0, got {self.head_weight}")
        if any(not m >= 0 for m in self.head_mixes):
            raise ValueError(f"head_mixes must all be ≥ 0, got {self.head_mixes}")
        if any(not m >= 0 for m in self.text_matches):
            raise ValueError(f"text_matches must all be ≥ 0, got {self.text_matches}")
        if any(not m >= 0 for m in self.keyword_matches):
            raise ValueError(f"keyword_matches must all be ≥ 0, got {self.keyword_matches}")
        if any(not m >= 0 for m in self.text_lookaheads):
            raise ValueError(f"text_lookaheads must all be ≥ 0, got {self.text_lookaheads}")
        if not self.distill_sid and not self.head_weight:
            raise ValueError("distill_sid=false leaves only the item head to distil into: head_weight must be > 0")
        for name in ("per_user", "eval_every", "batch_size", "teacher_size", "grpo_group",
                     "distill_batch_size", "grpo_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.grpo_group < 2:
            raise ValueError(f"grpo_group must be ≥ 2 (GRPO compares candidates within a group), got {self.grpo_group}")
        for name in ("lr", "grpo_lr", "teacher_temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.target_share <= 1.0:
            raise ValueError(f"target_share must be in [0, 1], got {self.target_share}")
        if self.teacher_for not in ("search", "all"):
            raise ValueError(f"teacher_for must be 'search' or 'all', got {self.teacher_for!r}")
        if self.teacher not in TEACHERS:
            raise ValueError(f"teacher must be one of {list(TEACHERS)}, got {self.teacher!r}")
        if self.distill_encoder and self.distill_sid:
            raise ValueError("distill_encoder and distill_sid both train the encoder on the teacher's lists: "
                             "choose one (distill_encoder keeps the SID path on the logged targets)")
        if self.anchor_weight < 0:
            raise ValueError(f"anchor_weight must be ≥ 0, got {self.anchor_weight}")
        if self.item_head_mix is not None and not self.item_head_mix >= 0:
            raise ValueError(f"item_head_mix must be ≥ 0 or None, got {self.item_head_mix}")
        if self.item_head_candidates is not None and self.item_head_candidates < 0:
            raise ValueError(f"item_head_candidates must be ≥ 0 or None, got {self.item_head_candidates}")
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight must be ≥ 0, got {self.kl_weight}")

    def steps(self, phase: str) -> int:
        return {"sft": self.sft_steps, "high_value": self.high_value_steps, "distill": self.distill_steps,
                "grpo": self.grpo_steps}[phase]

    @property
    def needs_cascade(self) -> bool:
        """Whether a phase reads the cascade: distillation from it, or GRPO on a ranker reward."""
        return bool((self.distill_steps and self.teacher == "cascade") or (self.grpo_steps and "ranker" in self.reward))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AlignConfig":
        return build_config(cls, values)
