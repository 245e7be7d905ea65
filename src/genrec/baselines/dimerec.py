"""DimeRec: a guidance extracted from the history, and a diffusion model that generates the next item's vector.

Li et al., WSDM 2025 ("DimeRec: a unified framework for enhanced sequential
recommendation via generative diffusion models") split a sequential recommender
in two:

- **Guidance extraction (GEM).** A user's history is non-stationary — interests
  come and go — so the sequence encoder's state is turned into a steadier
  *guidance*: K interest vectors, each an attention pooling over the history seen
  so far (`a_k = softmax_j(w_k · tanh(W h_j))`, causal), mixed by how well each
  matches the newest state, added to it. The guidance is trained to predict the
  next item directly too (`guidance_weight`), which keeps it a recommender in
  its own right.
- **Diffusion aggregation (DAM).** The next item's vector is *generated*: the
  target's vector (unit length × √dim, so it lives on the noise's scale) is
  noised to a random step t of a cosine schedule, and a denoiser — an MLP over
  (noisy vector, guidance, step embedding) — predicts the clean vector. It is
  trained by the reconstruction error (`reconstruction_weight`) and by ranking
  the target first with the denoised vector (the recommendation loss, sampled
  or full softmax as `loss` says), which ties the generated vector to the item
  scores. At inference `sampling_steps` deterministic (DDIM) steps start from the
  noise's mean and the result scores every item like SASRec's hidden state.

The paper walks its noise on a sphere (geodesic diffusion); here it is Gaussian
around vectors scaled to the sphere of radius √dim, the one simplification. The
sequence encoder, training windows, validation, run folder (`RUN/train/dimerec`,
`genrec train --model dimerec`) and ranking are SASRec's (`genrec.baselines.sasrec`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrec.baselines.next_item_losses import SampledSoftmaxLoss, full_softmax_of
from genrec.baselines.sasrec import SASREC_CODE, SASRec, SASRecConfig, SASRecModelConfig, SASRecRetriever, softmax_block


@dataclass
class DimeRecConfig(SASRecConfig):
    """SASRec's fields plus the guidance and the diffusion."""

    interests: int = 4
    diffusion_steps: int = 50
    """T: steps of the forward (noising) process a training example is drawn from."""
    sampling_steps: int = 5
    """Reverse steps at inference (evenly spaced over T, deterministic)."""
    guidance_weight: float = 1.0
    reconstruction_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("interests", "diffusion_steps", "sampling_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"DimeRecConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.sampling_steps > self.diffusion_steps:
            raise ValueError(f"sampling_steps ({self.sampling_steps}) must be ≤ diffusion_steps ({self.diffusion_steps})")
        for name in ("guidance_weight", "reconstruction_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"DimeRecConfig.{name} must be ≥ 0, got {getattr(self, name)}")


def cosine_signal_levels(steps: int) -> Tensor:
    """ᾱ_t for t = 0..steps `[steps + 1]`: the share of the clean vector's variance left at step t
    (1 at t = 0, falling along a cosine to near 0 at t = steps)."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return (f / f[0]).clamp(1e-5, 1.0).float()


class DimeRec(SASRec):
    """SASRec's encoder → guidance `[batch, length, dim]`; `generate(guidance)` → the next item's vector.

    `forward(items)` returns the guidance (what the SASRec losses and `item_logits`
    read); `last_hidden` returns the *generated* vector after each history, so
    SASRec's ranking scores items by it.
    """

    def __init__(self, config: SASRecModelConfig, item_category: Tensor | None, interests: int,
                 diffusion_steps: int, sampling_steps: int):
        super().__init__(config, item_category, block=softmax_block)
        dim = config.dim
        self.interest_hidden = nn.Linear(dim, dim)
        self.interest_keys = nn.Linear(dim, interests, bias=False)
        self.guidance_norm = nn.LayerNorm(dim)
        self.step_embedding = nn.Embedding(diffusion_steps + 1, dim)
        self.denoiser = nn.Sequential(nn.Linear(3 * dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.diffusion_steps, self.sampling_steps = diffusion_steps, sampling_steps
        self.signal: Tensor
        self.register_buffer("signal", cosine_signal_levels(diffusion_steps))

    # ---------------------------------------------------------------- guidance (GEM)

    def forward(self, items: Tensor) -> Tensor:
        return self.guidance(items)

    def guidance(self, items: Tensor) -> Tensor:
        """`[batch, length, dim]`: each position's state plus its mix of K causal interest poolings."""
        hidden = super().forward(items)  # [b, l, d]
        length = items.shape[1]
        scores = self.interest_keys(torch.tanh(self.interest_hidden(hidden)))  # [b, l(j), k]
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()  # [l(i), l(j)]
        real = (items > 0)[:, None, :] & causal[None]  # [b, i, j]
        scores = scores.transpose(1, 2)[:, :, None, :].masked_fill(~real[:, None], -math.inf)  # [b, k, i, j]
        weights = torch.nan_to_num(scores.softmax(-1))  # rows without a real item (padding) → 0
        interests = weights @ hidden[:, None]  # [b, k, i, d]
        interests = interests.permute(0, 2, 1, 3)  # [b, i, k, d]
        mix = (interests @ hidden[..., None]).squeeze(-1).softmax(-1)  # [b, i, k]: how each interest matches now
        return self.guidance_norm(hidden + (mix[..., None] * interests).sum(2))

    # ---------------------------------------------------------------- diffusion (DAM)

    def clean_vectors(self, items: Tensor) -> Tensor:
        """The diffusion's clean vectors of item ids `[...]` → `[..., dim]`: unit length × √dim."""
        return F.normalize(self.item_vectors(items), dim=-1) * math.sqrt(self.config.dim)

    def denoise(self, noisy: Tensor, step: Tensor, guidance: Tensor) -> Tensor:
        """Predicted clean vector `[n, dim]` from a vector noised to `step` `[n]` under `guidance` `[n, dim]`."""
        return self.denoiser(torch.cat([noisy, guidance, self.step_embedding(step)], dim=-1))

    def noised(self, clean: Tensor, step: Tensor, noise: Tensor) -> Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε for `step` `[n]`."""
        level = self.signal[step][:, None]
        return level.sqrt() * clean + (1 - level).sqrt() * noise

    def generate(self, guidance: Tensor) -> Tensor:
        """The next item's vector `[n, dim]`: `sampling_steps` deterministic reverse steps from the noise's mean."""
        steps = torch.linspace(self.diffusion_steps, 0, self.sampling_steps + 1).round().long().tolist()
        x = torch.zeros_like(guidance)
        clean = x
        for current, following in zip(steps[:-1], steps[1:]):
            step = torch.full((len(guidance),), current, dtype=torch.long, device=guidance.device)
            clean = self.denoise(x, step, guidance)
            level, next_level = self.signal[current], self.signal[following]
            noise = (x - level.sqrt() * clean) / (1 - level).sqrt()
            x = next_level.sqrt() * clean + (1 - next_level).sqrt() * noise
        return clean

    def last_hidden(self, items: Tensor, lengths: Tensor) -> Tensor:
        guidance = self.guidance(items)[torch.arange(len(items), device=items.device), lengths - 1]
        return self.generate(guidance)


class DimeRecLoss:
    """Recommendation loss of the denoised vector + `guidance_weight` × that of the guidance
    + `reconstruction_weight` × the denoiser's squared error, at every real position."""

    def __init__(self, config: DimeRecConfig, item_counts: np.ndarray):
        self.config = config
        sampled = SampledSoftmaxLoss(item_counts, config.negatives, config.negative_sampler) if config.loss == "sampled" else None
        self.rank: Callable[[Any, Tensor, Tensor], Tensor] = sampled.of if sampled is not None else full_softmax_of

    def __call__(self, model: DimeRec, batch: dict[str, Tensor]) -> Tensor:
        real = batch["targets"] > 0
        guidance, targets = model.guidance(batch["inputs"])[real], batch["targets"][real]
        clean = model.clean_vectors(targets)
        step = torch.randint(1, model.diffusion_steps + 1, (len(targets),), device=targets.device)
        denoised = model.denoise(model.noised(clean, step, torch.randn_like(clean)), step, guidance)
        loss = self.rank(model, denoised, targets)
        if self.config.guidance_weight:
            loss = loss + self.config.guidance_weight * self.rank(model, guidance, targets)
        if self.config.reconstruction_weight:
            loss = loss + self.config.reconstruction_weight * F.mse_loss(denoised, clean)
        return loss


class DimeRecRetriever(SASRecRetriever):
    """SASRec's retriever whose network generates the next item's vector by diffusion."""

    name = "dimerec"
    config_type = DimeRecConfig
    code = (*SASREC_CODE, "genrec.baselines.dimerec")

    @classmethod
    def network(cls, config: SASRecConfig, shape: SASRecModelConfig, item_category: Tensor | None) -> SASRec:
        if not isinstance(config, DimeRecConfig):
            raise TypeError(f"DimeRecRetriever needs a DimeRecConfig, got {type(config).__name__}")
        return DimeRec(shape, item_category, config.interests, config.diffusion_steps, config.sampling_steps)

    @classmethod
    def training_loss(cls, config: SASRecConfig, item_counts: np.ndarray) -> Callable[[Any, dict[str, Tensor]], Tensor]:
        if not isinstance(config, DimeRecConfig):
            raise TypeError(f"DimeRecRetriever needs a DimeRecConfig, got {type(config).__name__}")
        return DimeRecLoss(config, item_counts)
