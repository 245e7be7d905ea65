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
from genrec.sid.tokenizer import SidTokenizer

MAX_RESET_ROUNDS = 8


class RQVAETokenizer(SidTokenizer):
    """TIGER-style RQ-VAE tokenizer.

    Parameters: `levels`; `codebook_size` per level (None: adaptive rule of
    `genrec.sid.codebook`); `latent_dim` of the code vectors; `hidden_dims` of the
    encoder MLP (the decoder mirrors it); `epochs`, `batch_size`, `lr` (Adam);
    `beta` the commitment weight; `seed`; `progress` shows a bar over epochs;
    `spread_last_level` lets siblings under one parent prefix take distinct
    last-level codes where the codebook allows (`genrec.sid.codebook`).

    Learned: `model_` (an `RQVAE` module), `reconstruction_loss_` (mean squared
    L2 error `||x - x̂||²` per epoch, `[epochs]`), `dead_codes_reset_` (codes
    reset per epoch, `[epochs]`), plus `codebook_size_`, `dim_`, `disambiguation_size_`.
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
        }

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

    def _fit(self, x: np.ndarray) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            generator = torch.Generator().manual_seed(self.seed)
            data = torch.from_numpy(x)
            model = RQVAE(x.shape[1], self.hidden_dims, self.latent_dim, self.levels, self.codebook_size_, self.beta)
            with torch.no_grad():
                codebooks, _ = residual_kmeans(model.encoder(data).numpy(), self.levels, self.codebook_size_, self.seed)
                model.quantizer.codebooks.copy_(torch.from_numpy(codebooks))
            optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
            self.reconstruction_loss_: list[float] = []
            self.dead_codes_reset_: list[int] = []
            for _ in tqdm(range(self.epochs), desc="rq-vae", unit="epoch", disable=not self.progress):
                model.train()
                total, order = 0.0, torch.randperm(len(data), generator=generator)
                for start in range(0, len(data), self.batch_size):
                    batch = data[order[start : start + self.batch_size]]
                    reconstruction, _, vq_loss = model(batch)
                    reconstruction_loss = ((reconstruction - batch) ** 2).sum(1).mean()
                    optimizer.zero_grad(set_to_none=True)
                    (reconstruction_loss + vq_loss).backward()
                    optimizer.step()
                    total += reconstruction_loss.item() * len(batch)
                self.reconstruction_loss_.append(total / len(data))
                self.dead_codes_reset_.append(model.reset_dead_codes(data, generator))
            model.eval()
        self.model_ = model

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
        return arrays

    def _restore(self, arrays: dict[str, np.ndarray], scalars: dict[str, Any]) -> None:
        model = RQVAE(self.dim_, self.hidden_dims, self.latent_dim, self.levels, self.codebook_size_, self.beta)
        state = {k.removeprefix("model."): torch.from_numpy(v) for k, v in arrays.items() if k.startswith("model.")}
        model.load_state_dict(state)
        model.eval()
        self.model_ = model
        self.reconstruction_loss_ = arrays["reconstruction_loss_"].tolist()
        self.dead_codes_reset_ = arrays["dead_codes_reset_"].tolist()


class RQVAE(nn.Module):
    """Encoder → residual quantizer → decoder. Shapes: x `[b, d]`, latent `[b, latent_dim]`,
    codes `[b, levels]`."""

    def __init__(self, dim: int, hidden_dims: Sequence[int], latent_dim: int, levels: int, codebook_size: int, beta: float):
        super().__init__()
        widths = [dim, *[int(h) for h in hidden_dims], latent_dim]
        self.encoder = _mlp(widths)
        self.decoder = _mlp(widths[::-1])
        self.quantizer = ResidualQuantizer(levels, codebook_size, latent_dim, beta)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (reconstruction `[b, d]`, codes `[b, levels]`, VQ loss scalar)."""
        latent = self.encoder(x)
        quantized, codes, vq_loss = self.quantizer(latent)
        return self.decoder(quantized), codes, vq_loss

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
