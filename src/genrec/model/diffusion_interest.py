"""DiffusionGS: the query as an intent anchor that denoises the behaviour history into one interest token.

A search's history mixes what the user wants now with everything they ever
browsed. DiffusionGS treats the user's immediate interest as the clean signal
of a diffusion process conditioned on the query: training adds noise to the
representation of the item the search ended on and learns to remove it by
attending over the history, the query steering which past actions count; at
inference the same denoiser runs its reverse steps from pure noise's mean (the
zero vector, so the answer is deterministic) and what comes out — an
intent-aware user representation — joins the full view's user part as one
more encoder token.

The User-aware Denoising Layer (UDL): the denoiser's attention over the
history is biased by the user's own profile tokens — the attention logit of
position j is `(q + U·u) · k_j / √d`, with `u` the mean of the user part — so
two users typing the same query weigh their histories differently.

What the target is: the sum of the target SID's code embeddings (the decoder's
own input table), layer-normalised and held fixed (no gradient through it:
a target that may move would shrink toward whatever the denoiser finds easy).
The generator never sees it: the token it reads is the reverse process's
output, computed without the target, in training as in serving; the
reconstruction loss (`GenerativeConfig.diffusion_weight` × mean squared error
of the predicted clean vector at a random noise level) trains the denoiser
beside the generator's own loss, which reaches it through that token.

    interest = DiffusionInterest(d_model=128, steps=4)
    token, real = interest(anchor, user, history, history_real)          # [B, 1, d], [B, 1]
    loss = interest.reconstruction_loss(target, anchor, user, history, history_real)
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

MAX_BETA = 0.5
"""The last step's noise variance: with few steps (4 by default) a linear schedule from 1e-4
to 0.5 leaves ᾱ_T ≈ 0.3, so the last noisy input still carries some of the target."""


class DiffusionInterest(nn.Module):
    """Denoiser `x̂₀ = f(x_t, t | query anchor, user, history)` and its deterministic reverse process."""

    alpha_bar: torch.Tensor  # [steps], ᾱ_t = Π (1 − β_s), a buffer

    def __init__(self, d_model: int, steps: int):
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be ≥ 1, got {steps}")
        self.steps, self.d_model = steps, d_model
        betas = torch.linspace(1e-4, MAX_BETA, steps, dtype=torch.float64)
        self.register_buffer("alpha_bar", torch.cumprod(1.0 - betas, 0).float(), persistent=False)
        self.time = nn.Embedding(steps, d_model)
        self.anchor = nn.Linear(d_model, d_model)
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.user_bias = nn.Linear(d_model, d_model, bias=False)  # UDL: the user's pull on the attention
        self.out = nn.Sequential(nn.Linear(2 * d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, d_model))
        self.last_condition: tuple[torch.Tensor, ...] | None = None  # training: the last forward's inputs

    def denoise(self, noisy: torch.Tensor, step: torch.Tensor, anchor: torch.Tensor, user: torch.Tensor,
                history: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Predicted clean vector `[B, d]` from `noisy [B, d]` at `step [B]`, given the query anchor
        `[B, d]`, the user vector `[B, d]` and the history `[B, T, d]` (`real [B, T]`)."""
        h = noisy + self.time(step) + self.anchor(anchor)
        q = self.query(h) + self.user_bias(user)
        logits = torch.einsum("bd,btd->bt", q, self.key(history)) / math.sqrt(self.d_model)
        logits = logits.masked_fill(~real, float("-inf"))
        weights = torch.nan_to_num(logits.float().softmax(dim=-1), nan=0.0).to(history.dtype)  # no history: 0
        read = torch.einsum("bt,btd->bd", weights, self.value(history))
        return self.out(torch.cat([h, read.to(h.dtype)], dim=-1))

    def forward(self, anchor: torch.Tensor, user: torch.Tensor, history: torch.Tensor,
                real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The reverse process from x_T = 0 (DDIM, no added noise): the interest token `[B, 1, d]`
        and its mask `[B, 1]` (always real: a user without history still has a query). In training
        the inputs are kept (`last_condition`) for the reconstruction loss of the same rows."""
        if self.training:
            self.last_condition = (anchor, user, history, real)
        x = anchor.new_zeros(anchor.shape[0], self.d_model)
        for t in reversed(range(self.steps)):
            step = torch.full((len(x),), t, dtype=torch.long, device=x.device)
            clean = self.denoise(x, step, anchor, user, history, real)
            if t == 0:
                x = clean
                break
            a_t, a_prev = self.alpha_bar[t], self.alpha_bar[t - 1]
            noise = (x - a_t.sqrt() * clean) / (1.0 - a_t).sqrt()
            x = a_prev.sqrt() * clean + (1.0 - a_prev).sqrt() * noise
        return x[:, None, :], torch.ones(len(x), 1, dtype=torch.bool, device=x.device)

    def take_loss(self, target: torch.Tensor) -> torch.Tensor | None:
        """`reconstruction_loss` of the last training forward's rows against `target [B, d]`, once."""
        condition, self.last_condition = self.last_condition, None
        return None if condition is None else self.reconstruction_loss(target, *condition)

    def reconstruction_loss(self, target: torch.Tensor, anchor: torch.Tensor, user: torch.Tensor,
                            history: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the clean vector predicted from the target `[B, d]` noised to a random
        step (the target is layer-normalised and detached)."""
        clean = F.layer_norm(target.detach().float(), (self.d_model,)).to(anchor.dtype)
        step = torch.randint(0, self.steps, (len(clean),), device=clean.device)
        a = self.alpha_bar[step][:, None].to(clean.dtype)
        noisy = a.sqrt() * clean + (1.0 - a).sqrt() * torch.randn_like(clean)
        return F.mse_loss(self.denoise(noisy, step, anchor, user, history, real).float(), clean.float())
