"""Calibrators: turn a ranker's scores into probabilities you can bid, fuse or threshold on.

Both calibrators are monotone non-decreasing maps of the raw probability, so they
never reorder the candidates of a request (`tests/test_cascade_calibrate.py`):

* `IsotonicCalibrator` — the classic baseline, a step function (scikit-learn).
* `UMCCalibrator` — UMC: an Unconstrained Monotonic Neural network,
  `f(x) = b + ∫_0^x g(t) dt` with `g = softplus(MLP(t)) > 0`, applied to the logit
  `x` of the raw probability and trained with a smooth calibration loss. The
  integral is a trapezoid quadrature on a fixed grid, integrated *exactly* between
  nodes, so `f` is strictly increasing by construction — not just approximately.

Metrics live here too: `expected_calibration_error`, `pcoc`, `reliability_diagram`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from genrec.cascade.logit import logit


def _check_probabilities(name: str, p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if p.size and (not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1):
        raise ValueError(f"{name} must be probabilities in [0, 1], got values in [{p.min()}, {p.max()}]")
    return p


def _check_labels(name: str, y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(y) != n:
        raise ValueError(f"{name} has {len(y)} entries, expected {n} (one per score)")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"{name} must hold 0/1 labels")
    return y


class IsotonicCalibrator:
    """Isotonic regression from raw probability to observed rate (non-decreasing step function)."""

    def fit(self, p: np.ndarray, y: np.ndarray) -> "IsotonicCalibrator":
        from sklearn.isotonic import IsotonicRegression

        p = _check_probabilities("p", p)
        y = _check_labels("y", y, len(p))
        self.model_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True).fit(p, y)
        return self

    def predict(self, p: np.ndarray) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise ValueError("IsotonicCalibrator is not fitted; call fit(p, y) first")
        return np.clip(self.model_.predict(_check_probabilities("p", p)), 0.0, 1.0)

    def state_dict(self) -> dict:
        return {"x": self.model_.X_thresholds_.tolist(), "y": self.model_.y_thresholds_.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "IsotonicCalibrator":
        from sklearn.isotonic import IsotonicRegression

        calibrator = cls()
        x, y = np.asarray(state["x"]), np.asarray(state["y"])
        calibrator.model_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
        return calibrator


class MonotoneIntegralNet(nn.Module):
    """`f(x) = b + ∫_0^x g(t) dt`, `g > 0`, on inputs `x` `[n]` → `[n]`.

    `g` is evaluated on `nodes` grid points spanning `[low, high]`; between nodes
    it is linear, and the integral of that piecewise-linear positive function is
    computed exactly (cumulative trapezoid + the partial segment), so `f' = g > 0`
    everywhere. Outside the grid `g` is held at its end values.
    """

    grid: torch.Tensor  # buffer registered in __init__

    def __init__(self, low: float, high: float, nodes: int = 64, hidden: int = 16):
        super().__init__()
        if not high > low:
            raise ValueError(f"high ({high}) must exceed low ({low})")
        self.register_buffer("grid", torch.linspace(low, high, nodes, dtype=torch.float64))
        self.g = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.bias = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.double()

    def slopes(self) -> torch.Tensor:
        """`g` at the grid nodes, `[nodes]`, strictly positive."""
        scale = (self.grid[-1] - self.grid[0]) / 2
        centre = (self.grid[-1] + self.grid[0]) / 2
        return nn.functional.softplus(self.g(((self.grid - centre) / scale)[:, None])[:, 0]) + 1e-3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float64)
        grid, g = self.grid, self.slopes()
        step = grid[1] - grid[0]
        cumulative = torch.cat([g.new_zeros(1), torch.cumsum((g[1:] + g[:-1]) / 2 * step, 0)])
        zero = self._integral_from_low(torch.zeros(1, dtype=torch.float64, device=x.device), grid, g, cumulative, step)
        return self.bias + self._integral_from_low(x, grid, g, cumulative, step) - zero

    @staticmethod
    def _integral_from_low(x, grid, g, cumulative, step):
        """`∫_{grid[0]}^x g`, with `g` constant beyond the ends (so also for x < grid[0])."""
        last = len(grid) - 1
        below = torch.clamp(x - grid[0], max=0) * g[0]
        above = torch.clamp(x - grid[-1], min=0) * g[-1]
        inside = torch.clamp(x, grid[0], grid[-1])
        j = torch.clamp(((inside - grid[0]) / step).floor().long(), 0, last - 1)
        h = inside - grid[j]
        slope = (g[j + 1] - g[j]) / step
        return below + cumulative[j] + g[j] * h + slope * h * h / 2 + above


@dataclass
class UMCConfig:
    nodes: int = 64
    hidden: int = 16
    epochs: int = 100
    lr: float = 0.05
    smooth_weight: float = 1.0
    """Weight of the smooth calibration term beside the log loss."""
    bins: int = 15
    seed: int = 0


class UMCCalibrator:
    """UMC calibration: a monotone neural map of the raw logit, trained with
    log loss + a smooth (kernel-binned, differentiable) calibration error."""

    def __init__(self, config: UMCConfig | None = None):
        self.config = config or UMCConfig()

    def fit(self, p: np.ndarray, y: np.ndarray) -> "UMCCalibrator":
        p = _check_probabilities("p", p)
        y = _check_labels("y", y, len(p))
        if len(p) < 2:
            raise ValueError("UMCCalibrator.fit needs at least 2 scores")
        cfg = self.config
        torch.manual_seed(cfg.seed)
        x = logit(p)
        low, high = float(np.quantile(x, 0.001)), float(np.quantile(x, 0.999))
        if high - low < 1e-3:
            low, high = low - 1.0, high + 1.0
        self.net_ = MonotoneIntegralNet(low, high, cfg.nodes, cfg.hidden)
        with torch.no_grad():
            self.net_.bias.fill_(float(logit(np.array([y.mean()]))[0]))
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        optimizer = torch.optim.Adam(self.net_.parameters(), lr=cfg.lr)
        for _ in range(cfg.epochs):
            optimizer.zero_grad()
            z = self.net_(xt)
            loss = nn.functional.binary_cross_entropy_with_logits(z, yt)
            loss = loss + cfg.smooth_weight * smooth_calibration_error(torch.sigmoid(z), yt, cfg.bins)
            loss.backward()
            optimizer.step()
        return self

    def predict(self, p: np.ndarray) -> np.ndarray:
        if not hasattr(self, "net_"):
            raise ValueError("UMCCalibrator is not fitted; call fit(p, y) first")
        with torch.no_grad():
            return torch.sigmoid(self.net_(torch.from_numpy(logit(_check_probabilities("p", p))))).numpy()

    def state_dict(self) -> dict:
        return {"grid": [float(self.net_.grid[0]), float(self.net_.grid[-1])], "weights": self.net_.state_dict()}

    @classmethod
    def from_state_dict(cls, state: dict, config: UMCConfig | None = None) -> "UMCCalibrator":
        calibrator = cls(config)
        cfg = calibrator.config
        calibrator.net_ = MonotoneIntegralNet(state["grid"][0], state["grid"][1], cfg.nodes, cfg.hidden)
        calibrator.net_.load_state_dict(state["weights"])
        return calibrator


def smooth_calibration_error(p: torch.Tensor, y: torch.Tensor, bins: int = 15, bandwidth: float | None = None) -> torch.Tensor:
    """Differentiable ECE: Gaussian-kernel soft bins over predicted probability `p` `[n]`.

    Each score belongs to every bin with weight `exp(-(p - c)² / 2h²)`; per bin the
    squared gap between mean prediction and mean label is weighted by the bin's
    share of the mass.
    """
    centres = torch.linspace(0.5 / bins, 1 - 0.5 / bins, bins, dtype=p.dtype, device=p.device)
    h = bandwidth or 1.0 / bins
    w = torch.exp(-((p[:, None] - centres[None, :]) ** 2) / (2 * h * h))  # [n, bins]
    mass = w.sum(0) + 1e-9
    gap = (w * (p - y)[:, None]).sum(0) / mass
    return ((mass / mass.sum()) * gap * gap).sum()


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width bins: Σ_b (n_b / n) |mean p_b − mean y_b|."""
    p = _check_probabilities("p", p)
    y = _check_labels("y", y, len(p))
    if not len(p):
        return float("nan")
    index = np.minimum((p * bins).astype(int), bins - 1)
    gap = np.abs(np.bincount(index, p, bins) - np.bincount(index, y, bins))
    return float(gap.sum() / len(p))


def pcoc(p: np.ndarray, y: np.ndarray) -> float:
    """Predicted over observed clicks: Σp / Σy (1 is calibrated on average; nan without positives)."""
    p = _check_probabilities("p", p)
    y = _check_labels("y", y, len(p))
    return float(p.sum() / y.sum()) if y.sum() > 0 else float("nan")


def reliability_curve(p: np.ndarray, y: np.ndarray, bins: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty equal-width bin: mean prediction, observed rate, count."""
    p = _check_probabilities("p", p)
    y = _check_labels("y", y, len(p))
    index = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    keep = count > 0
    mean_p = np.bincount(index, p, bins)[keep] / count[keep]
    mean_y = np.bincount(index, y, bins)[keep] / count[keep]
    return mean_p, mean_y, count[keep]


def reliability_diagram(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "Reliability") -> Path:
    """Plot observed rate against mean prediction per bin, one line per calibrator; PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genrec.artifacts import atomic_path

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    for name, (p, y) in curves.items():
        mean_p, mean_y, _ = reliability_curve(p, y)
        ece = expected_calibration_error(p, y)
        ax.plot(mean_p, mean_y, marker="o", markersize=3, label=f"{name} (ECE {ece:.4f})")
    top = max(0.05, max(float(np.quantile(np.asarray(p), 0.999)) for p, _ in curves.values()) * 1.1)
    ax.set_xlim(0, min(1, top))
    ax.set_ylim(0, min(1, top))
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed rate")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
