"""Which process am I, and who writes: the few collective helpers a training entry point needs under torchrun.

`torchrun` starts one process per device and sets `WORLD_SIZE`, `RANK` and
`LOCAL_RANK`; nothing else tells a process it is one of many. Every rank runs the
same code, so anything that touches the run folder or the terminal must say who
does it, or two processes write `config.json` at once and print every line
twice. The rules, used by `genrec.train.loop` and `genrec.train.generative`:

- rank 0 (the *main* process) alone writes files and prints;
- a rank that reads what rank 0 writes waits for it at a barrier first
  (`main_first` for a cache rank 0 fills, `barrier` after a write);
- values decided on rank 0 (evaluation, the best step) reach the others through
  `from_main`.

Outside torchrun (`WORLD_SIZE` unset or 1) every helper is a no-op, so the same
code trains in one process.

    with process_group("cpu"):            # joins torchrun's group (gloo on CPU, nccl on GPU), or does nothing
        with main_first():
            cache = build_or_load_cache()  # rank 0 builds and writes it, then the others load it
        ...
        if is_main():
            write_json(...)
        barrier()
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.distributed as dist


def requested_world_size() -> int:
    """How many processes torchrun started (1 outside torchrun), from the environment."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_process_group(device: str) -> bool:
    """Join the torchrun process group if the environment asks for one; True if this call started it.

    `device` is `TrainConfig.device`: CUDA (nccl, one GPU per local rank) unless it says "cpu"
    or no GPU is there, gloo otherwise."""
    if requested_world_size() <= 1 or dist.is_initialized():
        return False
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True


@contextmanager
def process_group(device: str) -> Iterator[None]:
    """The torchrun process group for the block (left as it is when the caller already joined one)."""
    started = init_process_group(device)
    try:
        yield
    finally:
        if started:
            dist.destroy_process_group()


def rank() -> int:
    """This process's rank: in the group once joined, else the `RANK` torchrun set (0 outside torchrun),
    so that `is_main` is right before the group is joined and after it is left (a command's final print)."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Processes in the group (1 outside one)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """True on the one process that writes files and prints: rank 0, or the only process."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for outside a group)."""
    if dist.is_initialized():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0, then on the other ranks: for work that fills a cache on disk
    (MiniLM item vectors), so rank 0 computes and writes it and the others read it back
    instead of computing it again or racing on the file. If rank 0 fails in the block, the
    others stay at the barrier until torchrun stops them (it ends every worker when one fails)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def from_main(value: Any) -> Any:
    """Rank 0's value on every rank (evaluation and best-checkpoint choice happen there)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
