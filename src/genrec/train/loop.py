"""The one training loop: same code on a CPU, a GPU, or many processes under torchrun.

Distributed data parallel is switched on by the environment, not by a second
code path: when `torchrun` sets `WORLD_SIZE > 1` (with `RANK`, `LOCAL_RANK`),
`train` joins the process group (gloo on CPU, nccl on GPU), shards every batch
across the ranks and averages gradients with `DistributedDataParallel`. Rank 0
alone evaluates, writes checkpoints and metrics.csv and shows the progress bar
(`genrec.train.distributed` says who does what).

Averaging gradients averages each rank's *mean* loss. When a batch's loss is a
mean over a number of targets that differs between the halves of a batch (the
generative model's windows hold 1 to max_short + 1 targets each), that is not the mean over
the global batch; `batch_weight` (targets per batch) makes it so: each rank's loss
is scaled by world_size · its targets / all ranks' targets, and N processes then
take the steps one process takes with the whole batch. The loss the loop reports
is the global batch's on every rank.

Determinism is the design constraint. The examples a step sees are a pure
function of (seed, step, rank, world size) — see `batch_indices` — and the
learning rate is a pure function of the step (`lr_at`), so `last.pt` (weights,
optimizer, step, every rank's RNG states) is all a resumed run needs to take
exactly the steps the uninterrupted run would have taken.

`last.pt` is written every `checkpoint_every` steps *and* whenever the next
step would end more than `checkpoint_seconds` (default 60) after the last
save, so a crash loses at most about a minute of work however slow the steps
are. Saving reads RNG states and never draws from them, so when a checkpoint
is written does not change the trajectory.

Usage::

    result = train(model, loss_fn, examples, collate, TrainConfig(steps=500), out_dir,
                   evaluate=lambda m: {"ndcg@10": ...})
    load_best(model, out_dir)

`loss_fn(model, batch) -> scalar tensor` receives the plain model (never the
DDP wrapper), so it may call any of the model's methods; the loop runs it
inside the DDP forward so gradients are still synchronised.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from genrec.artifacts import atomic_path
from genrec.device import cpu_has_bf16
from genrec.train.distributed import barrier, from_main, init_process_group, rank, world_size
from genrec.train.metrics_csv import METRICS_FILE, MetricsCSV

log = logging.getLogger(__name__)

BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"
# Fields that fix the trajectory of a run: resuming with different values would
# silently produce a run that neither configuration describes.
_TRAJECTORY_FIELDS = ("steps", "batch_size", "lr", "weight_decay", "warmup_steps", "min_lr_ratio", "grad_clip", "seed")


ModelT = TypeVar("ModelT", bound=nn.Module)
"""The model's own type, so `loss_fn` and `evaluate` may take the concrete model `train` was given."""


class Examples(Protocol):
    """What `train` reads from its examples: a length and integer indexing (a list, a range, a Dataset with `__len__`)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


class CheckpointError(ValueError):
    """A checkpoint that is missing or unreadable, with its path and what to do about it."""

    def __init__(self, path: Path, problem: str, remedy: str):
        self.path = Path(path)
        super().__init__(f"{path}: {problem}; {remedy}")


_clock = time.monotonic
"""Seconds for the checkpoint interval (a module attribute, so tests can run a fake clock)."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one run. `batch_size` is the global batch (split across ranks)."""

    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    eval_every: int = 500
    checkpoint_every: int = 250
    log_every: int = 50  # a metrics.csv row every this many steps (and at every evaluation)
    # Also save last.pt before a step would end more than this many seconds (of training and
    # evaluation) after the last save; None: the step interval only.
    checkpoint_seconds: float | None = 60.0
    seed: int = 0
    device: str = "auto"
    bf16: bool = True  # bf16 autocast on CUDA (no effect on a CPU)
    # bf16 autocast on a CPU, where the CPU has bf16 arithmetic (AVX-512 BF16 or AMX; `cpu_has_bf16`):
    # elsewhere bf16 matmuls are emulated and slower, and the run stays fp32. Weights and optimizer
    # state stay fp32 either way; evaluation runs in fp32.
    cpu_bf16: bool = True
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at the last step
    progress: bool = True  # tqdm bar on rank 0
    # DDP only: tolerate parameters a batch does not touch (e.g. a query encoder
    # on a recommendation-only batch, idle experts); costs one graph walk a step.
    find_unused_parameters: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.checkpoint_seconds is not None and not self.checkpoint_seconds > 0:
            raise ValueError(f"TrainConfig.checkpoint_seconds must be > 0 or None, got {self.checkpoint_seconds}")
        if self.warmup_steps < 0:
            raise ValueError(f"TrainConfig.warmup_steps must be ≥ 0, got {self.warmup_steps}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip < 0:
            raise ValueError(f"TrainConfig.grad_clip must be ≥ 0 (0 disables clipping), got {self.grad_clip}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def train_options(config: TrainConfig, *, steps: int | None = None, device: str = "auto",
                  checkpoint_every: int | None = None, checkpoint_seconds: float | None = None) -> TrainConfig:
    """`config` with the command line's settings; an option left as None keeps the config's value."""
    return replace(
        config,
        device=device,
        steps=config.steps if steps is None else steps,
        checkpoint_every=config.checkpoint_every if checkpoint_every is None else checkpoint_every,
        checkpoint_seconds=config.checkpoint_seconds if checkpoint_seconds is None else checkpoint_seconds,
    )


@dataclass
class TrainResult:
    """What a run reached. `best_metric` is None when no `evaluate` callback was given."""

    best_metric: float | None
    best_step: int
    last_step: int
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per evaluation
    losses: list[float] = field(default_factory=list)  # the global batch's training loss, one per step
    seconds: float = 0.0  # wall time of this call
    examples_per_second: float = 0.0  # global examples per second in this call


def train(
    model: ModelT,
    loss_fn: Callable[[ModelT, Any], Tensor],
    examples: Examples,
    collate: Callable[[list[Any]], Any],
    config: TrainConfig,
    out_dir: Path,
    evaluate: Callable[[ModelT], dict[str, float]] | None = None,
    metric: str = "ndcg@10",
    resume: bool = False,
    stop_after: int | None = None,
    batch_weight: Callable[[Any], float] | None = None,
) -> TrainResult:
    """Train `model` in place for `config.steps` optimizer steps; checkpoints go to `out_dir`,
    and the training curve to `out_dir/metrics.csv` (`genrec.train.metrics_csv`).

    `examples[i]` are fed to `collate(list_of_examples)`; tensors in the batch
    (also inside dicts, lists, tuples) are moved to the device. `evaluate(model)`
    runs on rank 0 every `eval_every` steps and at the end, in eval mode under
    `torch.no_grad()`; `metric` (higher is better) picks `best.pt`. Without
    `evaluate`, `best.pt` is the final model.

    `resume=True` continues from `out_dir/last.pt`; it raises `CheckpointError`
    when there is none (a run stopped before its first checkpoint) or it cannot
    be read, rather than silently starting over. `stop_after=n` returns after n
    steps of this call, with `last.pt` written — a planned interruption (time
    budgets, tests).

    `batch_weight(batch)`: how many targets `loss_fn`'s mean runs over, for a loss
    whose per-batch count varies (see the module's docstring); None when every
    example weighs the same. It changes nothing in one process.
    """
    if len(examples) == 0:
        raise ValueError("examples is empty; expected at least one training example")
    if stop_after is not None and stop_after < 0:
        raise ValueError(f"stop_after must be ≥ 0 or None, got {stop_after}")
    out_dir = Path(out_dir)
    started_group = init_process_group(config.device)
    try:
        return _train(model, loss_fn, examples, collate, config, out_dir, evaluate, metric, resume, stop_after,
                      batch_weight)
    finally:
        if started_group:
            dist.destroy_process_group()


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based).

    Linear warm-up from lr/warmup_steps to lr over the first `warmup_steps`
    steps, then a half cosine from lr down to lr·min_lr_ratio at the last step.
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    decay_steps = max(1, config.steps - 1 - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / decay_steps)
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def autocast_context(config: TrainConfig, device: torch.device) -> torch.autocast:
    """The forward pass's bf16 autocast: `config.bf16` on CUDA, `config.cpu_bf16` on a CPU with bf16
    arithmetic (`cpu_has_bf16`), off elsewhere.

    Autocast only: parameters, gradients and AdamW's moments stay fp32 (master weights), and
    evaluation runs outside it, in the model's own fp32. Two flags rather than one `precision`
    because saved configs say `bf16: true` and mean "on CUDA"; `cpu_bf16: false` asks a CPU run
    for fp32 numbers (benchmarks/results/train_precision.md and train_speed.md compare the two).
    """
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=config.bf16)
    enabled = config.cpu_bf16 and device.type == "cpu" and cpu_has_bf16()
    return torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=enabled)


@functools.cache
def batch_indices(step: int, n_examples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """Indices of the examples rank `rank` trains on at optimizer step `step`.

    Each epoch is a permutation of all examples seeded by (seed, epoch), padded
    by wrapping around to a whole number of global batches; global batch b takes
    `batch_size` consecutive entries and rank r every `world_size`-th of them,
    starting at r (as DistributedSampler does). The union over ranks is the
    global batch, whatever the world size.
    """
    if batch_size % world_size:
        raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of processes ({world_size})")
    per_epoch = math.ceil(n_examples / batch_size)
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_examples)
    order = np.resize(order, per_epoch * batch_size)  # wrap around to fill the last batch
    return order[position * batch_size:(position + 1) * batch_size][rank::world_size]


def load_best(model: nn.Module, out_dir: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load `out_dir/best.pt` weights into `model`; return the checkpoint's metadata (no weights)."""
    path = Path(out_dir) / BEST_CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no best checkpoint at {path}; train first")
    checkpoint = read_checkpoint(path, map_location, ("model",), "train again to write it")
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise CheckpointError(path, f"weights do not fit this model ({str(error).splitlines()[0]})",
                              "expected a best.pt trained with the same model configuration") from error
    return {k: v for k, v in checkpoint.items() if k != "model"}


# --------------------------------------------------------------------------- the loop


def _train(model, loss_fn, examples, collate, config, out_dir, evaluate, metric, resume, stop_after,
           batch_weight) -> TrainResult:
    rank_, world_size_ = rank(), world_size()
    is_main = rank_ == 0
    device = _device(config.device)
    model.to(device)
    optimizer = _optimizer(model, config, device)

    start_step, best_metric, best_step, history, losses = 0, None, 0, [], []
    last_path = out_dir / LAST_CHECKPOINT
    if resume:
        if not last_path.exists():
            raise CheckpointError(last_path, "nothing to resume: no checkpoint was written (the run stopped before "
                                  "its first one, or never started here)",
                                  "train without --resume (resume=False) to start from step 0")
        state = read_checkpoint(last_path, device, _LAST_KEYS, "delete it and train without --resume to start "
                                 "from step 0")
        _check_same_trajectory(config, state["config"])
        _check_same_model(model, state.get("model_config"))
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise CheckpointError(last_path, f"weights or optimizer state do not fit this model "
                                  f"({str(error).splitlines()[0]})", "expected a last.pt of the same model; "
                                  "delete it and train without --resume to start from step 0") from error
        start_step = int(state["step"])
        best_metric, best_step = state["best_metric"], int(state["best_step"])
        history, losses = list(state["history"]), list(state["losses"])
        _set_rng_states(state["rng"], rank_, world_size_, config.seed + start_step)
    else:
        _seed_everything(config.seed + rank_)

    loss_module = _LossModule(model, loss_fn)
    runner: nn.Module = loss_module
    if world_size_ > 1:
        runner = nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=config.find_unused_parameters,
        )
    autocast = autocast_context(config, device)

    end_step = config.steps if stop_after is None else min(config.steps, start_step + stop_after)
    bar = tqdm(total=config.steps, initial=start_step, desc="train", unit="step",
               disable=not (is_main and config.progress), dynamic_ncols=True)
    model.train()
    began, seen = time.perf_counter(), 0
    saved_at = step_began = _clock()
    curve = MetricsCSV(out_dir / METRICS_FILE, keep_until=start_step if resume else None) if is_main else None
    window_seen, window_seconds = 0, 0.0  # training examples and seconds since the last metrics.csv row
    for step in range(start_step, end_step):
        tick = time.perf_counter()
        indices = batch_indices(step, len(examples), config.batch_size, config.seed, rank_, world_size_)
        batch = _to_device(collate([examples[int(i)] for i in indices]), device)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        share = _loss_share(batch_weight(batch) if batch_weight is not None and world_size_ > 1 else None, device)
        with autocast:
            loss = runner(batch)
        if share != 1.0:
            loss = loss * share
        global_loss = _global_mean(loss.detach(), world_size_)
        if not torch.isfinite(global_loss):  # every rank sees the same value, so every rank stops here
            raise FloatingPointError(f"loss is {global_loss.item()} at step {step}; lower TrainConfig.lr or check the data")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()

        done = step + 1
        seen += len(indices) * world_size_
        losses.append(float(global_loss))
        window_seen += len(indices) * world_size_
        window_seconds += time.perf_counter() - tick
        rate = seen / max(time.perf_counter() - began, 1e-9)
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}", ex_s=f"{rate:,.0f}", lr=f"{lr_at(step, config):.2e}", refresh=False)

        scores: dict[str, float] = {}
        if evaluate is not None and (done % config.eval_every == 0 or done == config.steps):
            if is_main:
                scores = _run_evaluation(model, evaluate, metric)
                recent = losses[-config.eval_every:]
                history.append({"step": done, "loss": float(np.mean(recent)), **scores})
                log.log(logging.INFO if config.progress else logging.DEBUG, "step %d: %s", done,
                        "  ".join(f"{k}={v:.4f}" for k, v in scores.items()))
                if best_metric is None or scores[metric] > best_metric:
                    best_metric, best_step = float(scores[metric]), done
                    _save_best(model, config, out_dir, done, metric, best_metric)
            barrier()
        if curve is not None and (scores or done % config.log_every == 0 or done == config.steps):
            window_losses = losses[curve.last_step:done] or losses[-1:]  # losses[i] is step i's, kept across resumes
            extra = _training_metrics(model)
            curve.append({"step": done, "loss": float(np.mean(window_losses)), "lr": lr_at(step, config),
                          "examples_per_s": window_seen / max(window_seconds, 1e-9), **extra, **scores})
            if extra:
                log.debug("step %d: %s", done, "  ".join(f"{k}={v:.4f}" for k, v in extra.items()))
            window_seen, window_seconds = 0, 0.0
        now = _clock()
        step_seconds, step_began = now - step_began, now
        if _checkpoint_due(config, done, end_step, now - saved_at, step_seconds, device):
            _save_last(model, optimizer, config, out_dir, done, best_metric, best_step, history, losses, rank_, world_size_, len(examples))
            saved_at = step_began = _clock()
    bar.close()
    seconds = time.perf_counter() - began

    last_step = max(end_step, start_step)
    if evaluate is None and last_step == config.steps and is_main:
        best_step = last_step
        _save_best(model, config, out_dir, last_step, None, None)
    best_metric, best_step, history = from_main((best_metric, best_step, history))
    return TrainResult(best_metric, best_step, last_step, history, losses, seconds, seen / max(seconds, 1e-9))


def _loss_share(weight: float | None, device: torch.device) -> float:
    """world_size · this rank's weight / every rank's weight: the factor that turns this rank's mean
    loss into its part of the global batch's mean once DDP averages the gradients (1.0 without weights)."""
    if weight is None:
        return 1.0
    weights = torch.tensor([float(weight)], dtype=torch.float64, device=device)
    dist.all_reduce(weights)
    total = float(weights.item())
    if not total > 0:
        raise ValueError(f"batch_weight summed to {total} over the ranks' batches; expected a positive count of targets")
    return world_size() * float(weight) / total


def _global_mean(loss: Tensor, world_size_: int) -> Tensor:
    """The mean over ranks of each rank's (share-scaled) loss: the global batch's loss, on every rank."""
    if world_size_ == 1:
        return loss
    total = loss.float().clone()
    dist.all_reduce(total)
    return total / world_size_


class _LossModule(nn.Module):
    """The loss as a module, so DDP's forward (which arms gradient averaging)
    wraps whatever methods of the model `loss_fn` calls."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[Any, Any], Tensor]):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> Tensor:
        return self.loss_fn(self.model, batch)


def _optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: norms, biases and embeddings are not decayed."""
    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        if parameter.ndim < 2 or id(parameter) in embedding_weights:
            no_decay.append(parameter)
        else:
            decay.append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # Fused on a CPU too: the per-parameter loop launched ~10 small ops per tensor (about 1,000 a step
    # for this model), which cost more than the arithmetic (benchmarks/results/train.md).
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), fused=device.type in ("cuda", "cpu"))


def _run_evaluation(model: nn.Module, evaluate: Callable, metric: str) -> dict[str, float]:
    model.eval()
    try:
        with torch.no_grad():
            scores = {k: float(v) for k, v in evaluate(model).items()}
    finally:
        model.train()
    if metric not in scores:
        raise ValueError(f"evaluate returned {sorted(scores)}; expected it to include metric {metric!r}")
    return scores


# --------------------------------------------------------------------------- checkpoints


_LAST_KEYS = ("model", "optimizer", "config", "step", "best_metric", "best_step", "history", "losses", "rng")


def _checkpoint_due(config: TrainConfig, done: int, end_step: int, since_save: float, step_seconds: float,
                    device: torch.device) -> bool:
    """Save now if the step interval says so, or if the next step (assumed as long as the last,
    evaluation included) would end more than `checkpoint_seconds` after the last save.

    Under DDP every rank must agree (saving gathers RNG states from all of them), and clocks
    differ a little per rank: the time rule counts when any rank says so.
    """
    due_by_time = config.checkpoint_seconds is not None and since_save + step_seconds >= config.checkpoint_seconds
    if dist.is_initialized() and config.checkpoint_seconds is not None:
        flag = torch.tensor([float(due_by_time)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        due_by_time = bool(flag.item())
    return done % config.checkpoint_every == 0 or done == end_step or due_by_time


def read_checkpoint(path: Path, map_location: Any = "cpu", keys: tuple[str, ...] = ("model",),
                    remedy: str = "train again to write it") -> dict[str, Any]:
    """`torch.load(weights_only=True)` that raises `CheckpointError` naming the file when it is
    truncated, not a checkpoint, or lacks `keys` — for every reader of best.pt / last.pt."""
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except MemoryError:
        raise
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, zip errors…
        raise CheckpointError(path, f"not a readable checkpoint ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else 'no detail'})", remedy) from error
    missing = [k for k in keys if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise CheckpointError(path, f"not a genrec training checkpoint (missing {missing})", remedy)
    return checkpoint


def _save_best(model, config, out_dir, step, metric, value) -> None:
    checkpoint = {
        "model": model.state_dict(),
        "config": asdict(config),
        "model_config": _plain(getattr(model, "config", None)),
        "step": step,
        "metric": metric,
        "value": value,
    }
    _save_atomic(checkpoint, out_dir / BEST_CHECKPOINT)


def _save_last(model, optimizer, config, out_dir, step, best_metric, best_step, history, losses, rank, world_size, n_examples) -> None:
    rng = _rng_state()
    states: list[dict[str, Any] | None] = [None] * world_size
    if world_size > 1:
        dist.all_gather_object(states, rng)
    else:
        states = [rng]
    if rank != 0:
        return
    per_epoch = math.ceil(n_examples / config.batch_size)
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "config": asdict(config),
        "model_config": _plain(getattr(model, "config", None)),
        "step": step,
        "data_position": {"epoch": step // per_epoch, "batch": step % per_epoch, "world_size": world_size},
        "best_metric": best_metric,
        "best_step": best_step,
        "history": history,
        "losses": losses,
        "rng": states,
    }
    _save_atomic(checkpoint, out_dir / LAST_CHECKPOINT)


def _save_atomic(checkpoint: dict, path: Path) -> None:
    """Write to a temporary sibling and rename: a crash mid-save never leaves a
    file under the checkpoint's name that a later run would trust."""
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def _check_same_trajectory(config: TrainConfig, saved: dict[str, Any]) -> None:
    now = {name: getattr(config, name) for name in _TRAJECTORY_FIELDS}
    _refuse_changes("TrainConfig", saved, now, _TRAJECTORY_FIELDS, "the configuration the run started with")


def _check_same_model(model: nn.Module, saved: dict[str, Any] | None) -> None:
    """Weights of the same shapes load into a model built another way (another dropout,
    another mix weight), so a resume would silently continue the old model's trajectory
    under the new name: the saved model config must equal this model's. Checkpoints of
    models without a config (saved as None) have nothing to compare."""
    now = _plain(getattr(model, "config", None))
    if saved is None or now is None:
        return
    _refuse_changes("model configuration", saved, now, sorted(set(saved) | set(now)), "the model the run started with")


def _refuse_changes(what: str, saved: dict[str, Any], now: dict[str, Any], names, expected: str) -> None:
    """A ValueError naming every field of `names` whose saved value differs from the current one."""
    changed = [f"{name}: saved {saved.get(name)!r}, now {now.get(name)!r}" for name in names
               if saved.get(name) != now.get(name)]
    if changed:
        raise ValueError(f"cannot resume last.pt with a different {what} (" + "; ".join(changed)
                         + f"); expected {expected}, or resume=False")


# --------------------------------------------------------------------------- RNG


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """Every RNG a loss may draw from, as tensors and plain values (loadable with weights_only)."""
    legacy_state = np.random.get_state()  # legacy=True (the default): always the MT19937 5-tuple, never a dict
    assert isinstance(legacy_state, tuple)
    kind, keys, pos, has_gauss, cached = legacy_state
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_states(states: list[dict[str, Any]], rank: int, world_size: int, fallback_seed: int) -> None:
    if len(states) != world_size:
        warnings.warn(f"last.pt was written by {len(states)} processes, now {world_size}: "
                      "data order is preserved but random draws (dropout) are reseeded", stacklevel=3)
        _seed_everything(fallback_seed + rank)
        return
    state = states[rank]
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


# --------------------------------------------------------------------------- processes and devices


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("TrainConfig.device is 'cuda' but no CUDA device is available; expected 'auto' or 'cpu'")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(name)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [_to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    if is_dataclass(batch) and not isinstance(batch, type):
        return type(batch)(**{f.name: _to_device(getattr(batch, f.name), device) for f in fields(batch)})
    return batch


def _plain(config: Any) -> Any:
    """A model config as a plain dict (checkpoints load with weights_only=True)."""
    if config is None:
        return None
    if is_dataclass(config) and not isinstance(config, type):
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    if isinstance(config, dict):
        return config
    return None


def _training_metrics(model: nn.Module) -> dict[str, float]:
    """The model's own numbers for metrics.csv (a sparse MoE's expert usage), if it reports any."""
    report = getattr(model, "training_metrics", None)
    return dict(report()) if callable(report) else {}
