"""Where a model runs: one reading of a `device` setting for every stage that has one.

A setting is "auto" (the GPU when torch sees one, else the CPU) or any string
`torch.device` reads: "cpu", "cuda", "cuda:1", "mps". A config checks the
spelling when it is built (`check_device`), so a typo is reported with the other
bad fields before anything runs; whether the device exists is only known on the
machine that runs the stage (`resolve_device`), since a config written on a
laptop may train on a GPU server.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

AUTO = "auto"


def check_device(value: object, field: str = "device") -> None:
    """ValueError naming `field` unless `value` is "auto" or a string `torch.device` reads."""
    if value == AUTO or (isinstance(value, str) and re.fullmatch(r"(cpu|cuda)(:\d+)?", value)):
        return  # the usual spellings, without importing torch (a default config is built at import time)
    if isinstance(value, str):
        import torch

        try:
            torch.device(value)
            return
        except (RuntimeError, ValueError):
            pass
    raise ValueError(f"{field} must be 'auto' or a torch device such as 'cpu', 'cuda' or 'cuda:1', got {value!r}")


def resolve_device(value: str, field: str = "device") -> torch.device:
    """The `torch.device` a setting names on this machine: "auto" → cuda when available, else cpu.
    A CUDA device this machine lacks is a ValueError naming `field`, not a crash inside the first `.to()`."""
    import torch

    check_device(value, field)
    if value == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(value)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{field} is {value!r} but torch sees no CUDA device here; expected 'auto' or 'cpu'")
    return device


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX-512 BF16 or AMX, from Linux's /proc/cpuinfo).
    Without them oneDNN emulates bf16 matmuls, which is slower than fp32; an unknown CPU counts as without."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags
