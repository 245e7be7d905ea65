"""RQ-VAE: the TIGER Semantic ID tokenizer, in plain PyTorch.

An MLP encoder maps an item vector to a small latent; `levels` residual
codebooks quantize it coarse to fine; an MLP decoder reconstructs the item
vector from the sum of the chosen code vectors. Training minimises
reconstruction error plus, per level, the VQ-VAE codebook and commitment
losses (stop-gradients on either side), with a straight-through estimator so
the encoder learns through the non-differentiable code choice.

Two things keep codebooks alive, which matters more than anything else for
collision rate: codebooks start from residual k-means on the initial latents
(not random), and after every epoch each code that no item chose is reset to
the residual of an item, level by level. The last reset runs after the last
epoch, so on the training vectors every code of every level is used.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from genrec.sid.kmeans import residual_kmeans
from genrec.sid.quasid import colliding_pairs, cooccurrence_contrastive, hamming_margin_repulsion
from genrec.sid.tokenizer import SidTokenizer, check_vectors

MAX_RESET_ROUNDS = 8


class RQVAETokenizer(SidTokenizer):
    """TIGER-style RQ-VAE tokenizer.

    Parameters: `levels`; `codebook_size` per level (None: adaptive rule of
    `genrec.sid.codebook`); `latent_dim` of the code vectors; `hidden_dims` of the
    encoder MLP (the decoder mirrors it); `epochs`, `batch_size`, `lr` (Adam);
    `beta` the commitment weight; `seed`; `progress` shows a bar over epochs;
    `spread_last_level` lets siblings under one parent prefix take distinct
    last-level codes where the codebook allows (`genrec.sid.codebook`).

    QuaSID plug-ins (`genrec.sid.quasid`; 0 turns each off): `repulsion_weight` of the
    Hamming-guided margin repulsion between items whose full codes differ in at most
    `repulsion_max_differing` positions, with a margin of `repulsion_margin` × the batch's
    mean latent norm (pairs of one `benign` group are masked out); `contrastive_weight`
    of the dual-tower InfoNCE over `positive_pairs` (co-occurring items) at
    `contrastive_temperature`. The side inputs are `fit` arguments.

    Learned: `model_` (an `RQVAE` module), `reconstruction_loss_` (mean squared
    L2 error `||x - x̂||²` per epoch, `[epochs]`), `dead_codes_reset_` (codes
    reset per epoch, `[epochs]`), `colliding_pairs_` (valid colliding pairs the
    repulsion saw per epoch; empty without it), plus `codebook_size_`, `dim_`, `disambiguation_size_`.
    """

    def __init__(
        self,
        levels: int = 3,
        codebook_size: int | None = None,
        latent_dim: int = 32,
        hidden_dims: Sequence[int] = (256, 128),
        epochs: int = 60,
        batch_size: int = 256,
        lr: float = 1e-3,
        beta: float = 0.25,
        seed: int = 0,
        progress: bool = False,
        spread_last_level: bool = True,
        repulsion_weight: float = 0.0,
        repulsion_margin: float = 0.5,
        repulsion_max_differing: int = 0,
        contrastive_weight: float = 0.0,
        contrastive_temperature: float = 0.1,
    ):
        self.levels = levels
        self.codebook_size = codebook_size
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.beta = beta
        self.seed = seed
        self.progress = progress
        self.spread_last_level = spread_last_level
        self.repulsion_weight = repulsion_weight
        self.repulsion_margin = repulsion_margin
        self.repulsion_max_differing = repulsion_max_differing
        self.contrastive_weight = contrastive_weight
        self.contrastive_temperature = contrastive_temperature

    def get_params(self) -> dict[str, Any]:
        return {
            "levels": self.levels,
            "codebook_size": self.codebook_size,
            "latent_dim": self.latent_dim,
            "hidden_dims": [int(h) for h in self.hidden_dims],
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "beta": self.beta,
            "seed": self.seed,
            "progress": self.progress,
            "spread_last_level": self.spread_last_level,
            "repulsion_weight": self.repulsion_weight,
            "repulsion_margin": self.repulsion_margin,
            "repulsion_max_differing": self.repulsion_max_differing,
            "contrastive_weight": self.contrastive_weight,
            "contrastive_temperature": self.contrastive_temperature,
        }

    def fit(self, vectors: np.ndarray, parents: np.ndarray | None = None, benign: np.ndarray | None = None,
            positive_pairs: np.ndarray | None = None) -> "RQVAETokenizer":
        """Learn from item vectors `[n, d]`; the QuaSID losses read the optional side inputs:
        `parents` int `[n, P]` the attribute prefix (part of the code two items collide on),
        `benign` int `[n]` group ids whose members may share a code (`quasid.benign_groups`),
        `positive_pairs` int `[m, 2]` rows of co-occurring items (for `contrastive_weight`)."""
        n = len(check_vectors(vectors))
        parents = np.zeros((n, 0), dtype=np.int64) if parents is None else np.asarray(parents, dtype=np.int64)
        if parents.ndim != 2 or len(parents) != n:
            raise ValueError(f"parents must be [n={n}, P], got shape {parents.shape}")
        if benign is not None and self.repulsion_weight == 0:
            raise ValueError("benign is given but repulsion_weight is 0; the mask only applies to the repulsion loss")
        benign = np.arange(n, dtype=np.int64) if benign is None else np.asarray(benign, dtype=np.int64)
        if benign.shape != (n,):
            raise ValueError(f"benign must be [n={n}] group ids, got shape {benign.shape}")
        if (positive_pairs is not None) != (self.contrastive_weight > 0):
            raise ValueError("contrastive_weight > 0 and positive_pairs go together; got contrastive_weight="
                             f"{self.contrastive_weight!r} with positive_pairs {'given' if positive_pairs is not None else 'None'}")
        pairs = np.zeros((0, 2), dtype=np.int64) if positive_pairs is None else np.asarray(positive_pairs, dtype=np.int64)
        if pairs.ndim != 2 or pairs.shape[1] != 2 or (len(pairs) and (pairs.min() < 0 or pairs.max() >= n)):
            raise ValueError(f"positive_pairs must be [m, 2] row indices in [0, {n}), got shape {pairs.shape}")
        if self.contrastive_weight > 0 and not len(pairs):
            raise ValueError("positive_pairs is empty; contrastive_weight > 0 needs co-occurring items")
        if self.repulsion_weight > 0 and not self.repulsion_max_differing < parents.shape[1] + self.levels:
            raise ValueError(f"repulsion_max_differing must be < the code length ({parents.shape[1] + self.levels}), "
                             f"got {self.repulsion_max_differing!r}")
        self._side = (parents, benign, pairs)
        try:
            super().fit(vectors)
        finally:
            del self._side
        return self

    def _check_params(self) -> None:
        super()._check_params()
        for name in ("latent_dim", "epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")
        if any(not isinstance(h, (int, np.integer)) or h < 1 for h in self.hidden_dims):
            raise ValueError(f"hidden_dims must be positive integers, got {self.hidden_dims!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be ≥ 0, got {self.beta!r}")
        for name in ("repulsion_weight", "contrastive_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)!r}")
        for name in ("repulsion_margin", "contrastive_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not isinstance(self.repulsion_max_differing, (int, np.integer)) or self.repulsion_max_differing < 0:
            raise ValueError(f"repulsion_max_differing must be an integer ≥ 0, got {self.repulsion_max_differing!r}")

    def _fit(self, x: np.ndarray) -> None:
        parents, benign, positive = getattr(self, "_side", None) or (
            np.zeros((len(x), 0), np.int64), np.arange(len(x)), np.zeros((0, 2), np.int64))
        rng = np.random.default_rng(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            generator = torch.Generator().manual_seed(self.seed)
            data = torch.from_numpy(x)
            model = self._new_model(x.shape[1])
            with torch.no_grad():
                codebooks, _ = residual_kmeans(model.encoder(data).numpy(), self.levels, self.codebook_size_, self.seed)
                model.quantizer.codebooks.copy_(torch.from_numpy(codebooks))
            towers = nn.ModuleList([nn.Linear(self.latent_dim, self.latent_dim) for _ in range(2)])  # contrastive only
            parameters = [*model.parameters(), *(towers.parameters() if self.contrastive_weight > 0 else [])]
            optimizer = torch.optim.Adam(parameters, lr=self.lr)
            parents_t, benign_t, positive_t = torch.from_numpy(parents), torch.from_numpy(benign), torch.from_numpy(positive)
            self.reconstruction_loss_: list[float] = []
            self.dead_codes_reset_: list[int] = []
            self.colliding_pairs_: list[int] = []
            for _ in tqdm(range(self.epochs), desc="rq-vae", unit="epoch", disable=not self.progress):
                model.train()
                colliding = torch.zeros((0, 2), dtype=torch.int64)
                if self.repulsion_weight > 0:
                    with torch.no_grad():
                        codes = model.codes(model.encoder(data)).numpy()
                    found = colliding_pairs(np.concatenate([parents, codes], axis=1), self.repulsion_max_differing, rng)
                    colliding = torch.from_numpy(found[benign[found[:, 0]] != benign[found[:, 1]]])
                    self.colliding_pairs_.append(len(colliding))
                total, order = 0.0, torch.randperm(len(data), generator=generator)
                for start in range(0, len(data), self.batch_size):
                    batch = data[order[start : start + self.batch_size]]
                    reconstruction, _, vq_loss = model(batch)
                    reconstruction_loss = ((reconstruction - batch) ** 2).sum(1).mean()
                    loss = reconstruction_loss + vq_loss + self._extra_loss(model, batch)
                    if len(colliding):
                        a, b = colliding[torch.randint(len(colliding), (self.batch_size,), generator=generator)].T
                        latent_a, latent_b = model.encoder(data[a]), model.encoder(data[b])
                        codes_a = torch.cat([parents_t[a], model.codes(latent_a.detach())], dim=1)
                        codes_b = torch.cat([parents_t[b], model.codes(latent_b.detach())], dim=1)
                        margin = self.repulsion_margin * latent_a.detach().norm(dim=1).mean()  # scale-free
                        loss = loss + self.repulsion_weight * hamming_margin_repulsion(
                            latent_a, latent_b, codes_a, codes_b, self.repulsion_max_differing, margin,
                            valid=benign_t[a] != benign_t[b])
                    if len(positive_t):
                        a, b = positive_t[torch.randint(len(positive_t), (self.batch_size,), generator=generator)].T
                        loss = loss + self.contrastive_weight * cooccurrence_contrastive(
                            towers[0](model.encoder(data[a])), towers[1](model.encoder(data[b])), self.contrastive_temperature)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += reconstruction_loss.item() * len(batch)
                self.reconstruction_loss_.append(total / len(data))
                self.dead_codes_reset_.append(model.reset_dead_codes(data, generator))
            model.eval()
        self.model_ = model

    def _new_model(self, dim: int) -> "RQVAE":
        """The network fitted on vectors of width `dim` (a variant with other encoders overrides this)."""
        return RQVAE(dim, self.hidden_dims, self.latent_dim, self.levels, self.codebook_size_, self.beta)

    def _extra_loss(self, model: "RQVAE", batch: torch.Tensor) -> torch.Tensor:
        """A variant's own term of the training loss for `batch` `[b, d]` (none here)."""
        return batch.new_zeros(())

    def _semantic_codes(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            codes, last_distances = self.model_.encode(torch.from_numpy(x))
        return codes.numpy().astype(np.int64), last_distances.numpy()

    def _reconstruct(self, codes: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            index = torch.from_numpy(np.asarray(codes, dtype=np.int64))
            books = self.model_.quantizer.codebooks
            quantized = sum((books[level][index[:, level]] for level in range(self.levels)), torch.zeros(len(index), books.shape[2]))
            return self.model_.decoder(quantized).numpy()

    def _learned_arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"model.{k}": v.detach().numpy() for k, v in self.model_.state_dict().items()}
        arrays["reconstruction_loss_"] = np.asarray(self.reconstruction_loss_, dtype=np.float64)
        arrays["dead_codes_reset_"] = np.asarray(self.dead_codes_reset_, dtype=np.int64)
        arrays["colliding_pairs_"] = np.asarray(self.colliding_pairs_, dtype=np.int64)
        return arrays

    def _restore(self, arrays: dict[str, np.ndarray], scalars: dict[str, Any]) -> None:
        model = self._new_model(self.dim_)
        state = {k.removeprefix("model."): torch.from_numpy(v) for k, v in arrays.items() if k.startswith("model.")}
        model.load_state_dict(state)
        model.eval()
        self.model_ = model
        self.reconstruction_loss_ = arrays["reconstruction_loss_"].tolist()
        self.dead_codes_reset_ = arrays["dead_codes_reset_"].tolist()
        self.colliding_pairs_ = arrays["colliding_pairs_"].tolist() if "colliding_pairs_" in arrays else []


class RQVAE(nn.Module):
    """Encoder → residual quantizer → decoder. Shapes: x `[b, d]`, latent `[b, latent_dim]`,
    codes `[b, levels]`."""

    def __init__(self, dim: int, hidden_dims: Sequence[int], latent_dim: int, levels: int, codebook_size: int, beta: float):
        super().__init__()
        widths = [dim, *[int(h) for h in hidden_dims], latent_dim]
        self.encoder: nn.Module = _mlp(widths)
        self.decoder: nn.Module = _mlp(widths[::-1])
        self.quantizer = ResidualQuantizer(levels, codebook_size, latent_dim, beta)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (reconstruction `[b, d]`, codes `[b, levels]`, VQ loss scalar)."""
        latent = self.encoder(x)
        quantized, codes, vq_loss = self.quantizer(latent)
        return self.decoder(quantized), codes, vq_loss

    def codes(self, latent: torch.Tensor) -> torch.Tensor:
        """Nearest-code path `[b, levels]` of latents `[b, latent_dim]`, level by level on the residual."""
        residual, codes = latent, []
        for codebook in self.quantizer.codebooks:
            codes.append(_nearest(residual, codebook))
            residual = residual - codebook[codes[-1]]
        return torch.stack(codes, dim=1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes `[b, levels]`, squared distances to the last level's codes `[b, K]`)."""
        residual = self.encoder(x)
        codes = []
        for codebook in self.quantizer.codebooks:
            distances = _squared_distances(residual, codebook)
            codes.append(distances.argmin(dim=1))
            residual = residual - codebook[codes[-1]]
        return torch.stack(codes, dim=1), distances

    @torch.no_grad()
    def reset_dead_codes(self, x: torch.Tensor, generator: torch.Generator) -> int:
        """Point every code no row of `x` chose at the residual of a random row, level by level.

        A row is only taken from a code that keeps another row, and the reset is
        repeated (a moved code can pull rows away from a neighbour) until no code of
        the level is dead or `MAX_RESET_ROUNDS` pass. Residuals are recomputed after
        each level's reset, so level l + 1 sees the reset of level l. Returns how
        many codes were reset.
        """
        codebooks = self.quantizer.codebooks
        residual = self.encoder(x)
        reset = 0
        for level in range(codebooks.shape[0]):
            codes = _nearest(residual, codebooks[level])
            for _ in range(MAX_RESET_ROUNDS):
                dead = torch.nonzero(torch.bincount(codes, minlength=codebooks.shape[1]) == 0).flatten()
                if not len(dead):
                    break
                first_of_code = torch.zeros(len(codes), dtype=torch.bool)
                first_of_code[_first_occurrence(codes)] = True
                candidates = torch.unique(residual[~first_of_code], dim=0)
                if not len(candidates):
                    break
                chosen = torch.randperm(len(candidates), generator=generator)[: len(dead)]
                codebooks[level, dead[: len(chosen)]] = candidates[chosen]
                reset += len(chosen)
                codes = _nearest(residual, codebooks[level])
            residual = residual - codebooks[level, codes]
        return reset


class ResidualQuantizer(nn.Module):
    """`levels` codebooks `[levels, K, latent_dim]`; level l quantizes the residual of levels < l."""

    def __init__(self, levels: int, codebook_size: int, latent_dim: int, beta: float):
        super().__init__()
        self.codebooks = nn.Parameter(torch.randn(levels, codebook_size, latent_dim) * 0.1)
        self.beta = beta

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (straight-through quantized latent `[b, latent_dim]`, codes `[b, levels]`, loss)."""
        residual = latent
        quantized = torch.zeros_like(latent)
        codes, loss = [], latent.new_zeros(())
        for codebook in self.codebooks:
            index = _nearest(residual.detach(), codebook)
            chosen = codebook[index]
            # codebook loss moves codes toward the (frozen) residual; commitment keeps the encoder near its codes
            loss = loss + ((residual.detach() - chosen) ** 2).sum(1).mean()
            loss = loss + self.beta * ((residual - chosen.detach()) ** 2).sum(1).mean()
            quantized = quantized + chosen
            residual = residual - chosen.detach()
            codes.append(index)
        straight_through = latent + (quantized - latent).detach()
        return straight_through, torch.stack(codes, dim=1), loss


def _first_occurrence(codes: torch.Tensor) -> torch.Tensor:
    """Row index of the first row holding each distinct code."""
    order = torch.argsort(codes, stable=True)
    ordered = codes[order]
    starts = torch.ones(len(codes), dtype=torch.bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    return order[starts]


def _nearest(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    return _squared_distances(x, codebook).argmin(dim=1)


def _squared_distances(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    return (codebook * codebook).sum(1)[None, :] - 2.0 * (x @ codebook.T)


def _mlp(widths: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if index < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)
