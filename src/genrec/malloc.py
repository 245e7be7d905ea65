"""Process memory settings for decoding: a batch's activations are large, short-lived blocks."""

from __future__ import annotations

KEEP_FREED_BYTES = 1 << 30


def keep_freed_memory(limit: int = KEEP_FREED_BYTES) -> bool:
    """Let glibc malloc reuse freed blocks up to `limit` bytes instead of returning them to the kernel.

    By default a block over ~128 KiB is mmap-ed and unmapped on free, so each
    batch's decoder activations are new memory the kernel must fault in and
    zero: about 15% of a batch-64 decode's CPU (measured in
    `benchmarks/decode.py`, which sets the same). The price is that the process keeps its peak working set.
    Returns whether it could be set (False off glibc).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, limit)) and bool(libc.mallopt(m_trim_threshold, limit))
    except (OSError, AttributeError):
        return False
