"""The post-training losses, each a function of item log-probabilities (`genrec.align.policy`).

Shapes: `B` requests, `K` candidate items per request (a teacher's list or the
policy's own beams), `valid` `[B, K]` marks real candidates (padding is False).

* `weighted_nll` — SFT on logged targets, each weighted (PARS: deeper behaviour
  and lower positions count more).
* `listwise_distillation` — cross-entropy between a teacher's distribution over
  its ranked list and the policy's probabilities of the same items: the
  policy learns to put the teacher's items, in the teacher's proportions, on top
  of everything else it could generate.
* `group_advantages` + `grpo_loss` — GRPO over the beams of each request,
  with an exact KL to the frozen reference (`level_kl`).

Debiased GRPO (`debiased=True`) changes one thing, the advantage scale. Plain
GRPO divides each group's centred rewards by that group's own standard
deviation. In ranking the group is one request's candidate list, and many lists
are near-degenerate: the ranker finds the items about equally good (a cold user,
a vague query), so their rewards differ by noise. Dividing by a tiny standard
deviation turns that noise into advantages as large as those of a request
where one item is clearly right, and the policy is reordered by noise (the
same "difficulty bias" Dr. GRPO removes for language models). The debiased
variant centres within the group (a per-request baseline is still right: some
requests have better items than others) but scales by one standard deviation
pooled over the whole batch, so a group's push is proportional to how much its
rewards really differ. `tests/test_align_objectives.py` shows plain GRPO
reordering a flat group and the debiased one leaving it.
"""

from __future__ import annotations

import torch

EPS = 1e-6


def weighted_nll(log_probs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """−Σ w·log π / Σ w over `[B]` targets."""
    weights = weights.to(log_probs.dtype)
    return -(weights * log_probs).sum() / weights.sum().clamp_min(EPS)


def listwise_distillation(log_probs: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Cross-entropy H(teacher, π) over each request's list, averaged over requests.

    `log_probs` `[B, K]` policy log-probabilities of the listed items, `teacher` `[B, K]`
    non-negative weights (normalised here per row; padding ignored).
    """
    teacher = torch.where(valid, teacher.to(log_probs.dtype), torch.zeros_like(log_probs))
    teacher = teacher / teacher.sum(1, keepdim=True).clamp_min(EPS)
    safe = torch.where(valid, log_probs, torch.zeros_like(log_probs))
    return -(teacher * safe).sum(1).mean()


def group_advantages(rewards: torch.Tensor, valid: torch.Tensor, debiased: bool = False) -> torch.Tensor:
    """Advantages `[B, K]` of candidates from their rewards `[B, K]` within each request's group.

    Plain: (r − mean_group) / std_group. Debiased: (r − mean_group) / std pooled over
    the batch's centred rewards (module docstring). Padding gets 0; a group with
    fewer than two candidates gets 0 (nothing to compare).
    """
    rewards = rewards.to(torch.float32)
    n = valid.sum(1, keepdim=True).clamp_min(1)
    mean = torch.where(valid, rewards, 0.0).sum(1, keepdim=True) / n
    centred = torch.where(valid, rewards - mean, 0.0)
    if debiased:
        pooled = centred[valid].std(unbiased=False) if int(valid.sum()) > 1 else torch.tensor(0.0)
        scale = pooled.clamp_min(EPS)
    else:
        scale = ((centred ** 2).sum(1, keepdim=True) / n).sqrt() + EPS
    advantages = centred / scale
    return torch.where(valid & (n >= 2), advantages, torch.zeros_like(advantages))


def grpo_loss(log_probs: torch.Tensor, advantages: torch.Tensor, valid: torch.Tensor,
              kl: torch.Tensor | None = None, kl_weight: float = 0.0) -> torch.Tensor:
    """−mean(A · log π) over valid candidates (+ kl_weight · kl).

    One on-policy update per batch of rollouts, so the PPO ratio is 1 and its
    clipping never binds: the gradient is the plain advantage-weighted score function.
    """
    n = valid.sum().clamp_min(1)
    policy = -(torch.where(valid, advantages.detach() * log_probs, torch.zeros_like(log_probs))).sum() / n
    return policy + kl_weight * kl if kl is not None and kl_weight else policy


def level_kl(policy: list[torch.Tensor], reference: list[torch.Tensor]) -> torch.Tensor:
    """Mean over rows and levels of KL(π ‖ π_ref) between trie-masked log-distributions `[N, V_level]`.

    Exact over every code a visited prefix allows (no sampled estimator), so a flat
    reward leaves a gradient that only pulls the policy back to the reference.
    """
    total = []
    for log_p, log_q in zip(policy, reference):
        allowed = torch.isfinite(log_p) & torch.isfinite(log_q)
        log_p = log_p.masked_fill(~allowed, 0.0)  # finite everywhere, so no 0 · inf in the backward pass
        log_q = log_q.detach().masked_fill(~allowed, 0.0)
        total.append((allowed * log_p.exp() * (log_p - log_q)).sum(1))
    return torch.stack(total, 1).sum(1).mean()
