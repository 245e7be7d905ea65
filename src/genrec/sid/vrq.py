"""VRQ: one code from several views of an item, the views aligned before they are quantized.

OneVision's vision-aligned residual quantization (`SYSTEMS.md`) codes a product
from several views at once — there its images and its text. Concatenating the
views and quantizing the result (what `collaborative_weight` does) lets the
widest or loudest view decide the code and treats a view's missing rows as
real zeros. VRQ instead gives each view its own encoder into one latent space,
*aligns* the views of an item there (an InfoNCE loss: an item's text latent
must pick out its own behaviour latent among the batch's, and back), quantizes
the mean of the views an item has, and decodes every view from the one code,
so the code keeps what each view says that the others do not.

On our data the views are the item text (MiniLM), the collaborative vector from
training histories (`genrec.sid.collaborative`) and, where the catalogue has
one, the image view. An item nobody interacted with has an all-zero
collaborative vector: it is coded from its other views alone and left out of
the alignment. Everything else — residual codebooks initialised by k-means,
dead-code resets, QuaSID's plug-in losses, saving — is the RQ-VAE's
(`genrec.sid.rqvae`).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genrec.sid.rqvae import RQVAE, ResidualQuantizer, RQVAETokenizer, _mlp


class VRQTokenizer(RQVAETokenizer):
    """RQ-VAE over several views: `view_dims` are the widths of the views, in the order they are
    concatenated in the vectors `fit` reads; `alignment_weight` × the cross-view InfoNCE at
    `alignment_temperature` is added to the loss. Other parameters: `RQVAETokenizer`'s."""

    def __init__(self, view_dims: Sequence[int] = (384, 32), alignment_weight: float = 0.1,
                 alignment_temperature: float = 0.1, **rqvae: Any):
        self.view_dims = tuple(int(d) for d in view_dims)
        self.alignment_weight = alignment_weight
        self.alignment_temperature = alignment_temperature
        super().__init__(**rqvae)

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "view_dims": list(self.view_dims), "alignment_weight": self.alignment_weight,
                "alignment_temperature": self.alignment_temperature}

    def _check_params(self) -> None:
        super()._check_params()
        if len(self.view_dims) < 2 or min(self.view_dims) < 1:
            raise ValueError(f"view_dims must name two or more views of width ≥ 1, got {self.view_dims!r}")
        if not self.alignment_weight >= 0:
            raise ValueError(f"alignment_weight must be ≥ 0, got {self.alignment_weight!r}")
        if not self.alignment_temperature > 0:
            raise ValueError(f"alignment_temperature must be > 0, got {self.alignment_temperature!r}")

    def _new_model(self, dim: int) -> RQVAE:
        if dim != sum(self.view_dims):
            raise ValueError(f"vectors have {dim} columns but view_dims {self.view_dims} add up to {sum(self.view_dims)}")
        return MultiViewRQVAE(self.view_dims, self.hidden_dims, self.latent_dim, self.levels, self.codebook_size_, self.beta)

    def _extra_loss(self, model: RQVAE, batch: torch.Tensor) -> torch.Tensor:
        if not self.alignment_weight or not isinstance(model, MultiViewRQVAE):
            return batch.new_zeros(())
        latents, present = model.encoder.view_latents(batch)
        return self.alignment_weight * view_alignment_loss(latents, present, self.alignment_temperature)


class ViewEncoders(nn.Module):
    """One MLP per view into a shared latent; `forward` is the mean latent of the views each row has."""

    def __init__(self, view_dims: Sequence[int], hidden_dims: Sequence[int], latent_dim: int):
        super().__init__()
        self.view_dims = list(view_dims)
        self.encoders = nn.ModuleList(_mlp([d, *[int(h) for h in hidden_dims], latent_dim]) for d in view_dims)

    def view_latents(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents `[b, views, latent_dim]` and whether each row has each view `[b, views]` (not all zeros)."""
        parts = x.split(self.view_dims, dim=1)
        latents = torch.stack([encoder(part) for encoder, part in zip(self.encoders, parts)], dim=1)
        present = torch.stack([part.abs().sum(1) > 0 for part in parts], dim=1)
        return latents, present

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latents, present = self.view_latents(x)
        weight = present.float()
        weight[weight.sum(1) == 0] = 1.0  # a row with no view at all: the encoders' output on zeros
        return (latents * weight[..., None]).sum(1) / weight.sum(1, keepdim=True)


class ViewDecoders(nn.Module):
    """One MLP per view from the quantized latent; `forward` concatenates them like the input."""

    def __init__(self, view_dims: Sequence[int], hidden_dims: Sequence[int], latent_dim: int):
        super().__init__()
        self.decoders = nn.ModuleList(_mlp([latent_dim, *[int(h) for h in hidden_dims][::-1], d]) for d in view_dims)

    def forward(self, quantized: torch.Tensor) -> torch.Tensor:
        return torch.cat([decoder(quantized) for decoder in self.decoders], dim=1)


class MultiViewRQVAE(RQVAE):
    """The RQ-VAE with `ViewEncoders` / `ViewDecoders` in place of its single encoder and decoder."""

    encoder: ViewEncoders

    def __init__(self, view_dims: Sequence[int], hidden_dims: Sequence[int], latent_dim: int, levels: int,
                 codebook_size: int, beta: float):
        nn.Module.__init__(self)
        self.encoder = ViewEncoders(view_dims, hidden_dims, latent_dim)
        self.decoder = ViewDecoders(view_dims, hidden_dims, latent_dim)
        self.quantizer = ResidualQuantizer(levels, codebook_size, latent_dim, beta)


def view_alignment_loss(latents: torch.Tensor, present: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE between every pair of views over the rows that have both: row i's latent in
    view a must be nearest (cosine) to row i's latent in view b among those rows. `latents`
    `[b, views, d]`, `present` `[b, views]`; 0 where no pair has two such rows."""
    total, pairs = latents.new_zeros(()), 0
    views = latents.shape[1]
    for a in range(views):
        for b in range(a + 1, views):
            both = present[:, a] & present[:, b]
            if int(both.sum()) < 2:
                continue
            left = F.normalize(latents[both, a], dim=1)
            right = F.normalize(latents[both, b], dim=1)
            logits = left @ right.T / temperature
            labels = torch.arange(len(logits), device=logits.device)
            total = total + (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            pairs += 1
    return total / max(pairs, 1)
