"""The summary: one vector per request added to every decoder input.

It is a linear map of the encoder output's per-part means (the query's positions
averaged, the recent items', the long-term items', ...). Why: the decoder's first
position is the same vector for every request, so until cross-attention learns
*where* to look (a bilinear form starting near zero) it reads an average over all
positions in which the query is one voice among the context tokens; a model
trained on text → SID alone kept its first level at chance for about 100 steps of
a 500-step budget. Means taken per part are not diluted, and a linear map of them
is learned at once (`benchmarks/results/first_level_probe.md`).

On the causal path the target's own scenario and time join the summary (they
belong to the target, not to the history, so they cannot sit in the shared causal
memory), and with `latest_in_summary` so does the newest history position's
output, which has read the whole history: SASRec's user vector. The causal encoder
counts positions from the oldest item, so no fixed position means "the latest".
"""

from __future__ import annotations

import torch
import torch.nn as nn

from genrec.model.config import GenerativeConfig
from genrec.model.embedding import PART_NAMES


class Summary(nn.Module):
    def __init__(self, config: GenerativeConfig):
        super().__init__()
        d = config.d_model
        self.projection = nn.Linear(len(PART_NAMES) * d, d)
        self.latest = nn.Linear(d, d) if config.latest_in_summary else None

    def forward(self, means: list[torch.Tensor]) -> torch.Tensor:
        """`[B, d]` from the means of the first parts in `PART_NAMES` order (absent ones are 0)."""
        means = means + [torch.zeros_like(means[0])] * (len(PART_NAMES) - len(means))
        return self.projection(torch.cat(means, dim=1))

    def causal(self, user: torch.Tensor, history: torch.Tensor, context: torch.Tensor | None,
               latest: torch.Tensor | None) -> torch.Tensor:
        """`[N, d]` from the parts the causal path has: the user tokens' and the history's
        mean outputs, the target's embedded context mean (None: not read) and the newest
        history position's output (read only with `latest_in_summary`)."""
        means = [torch.zeros_like(user)] * len(PART_NAMES)
        means[PART_NAMES.index("user")] = user
        means[PART_NAMES.index("short")] = history
        if context is not None:
            means[PART_NAMES.index("context")] = context
        summary = self.projection(torch.cat(means, dim=1))
        return summary if self.latest is None or latest is None else summary + self.latest(latest)
