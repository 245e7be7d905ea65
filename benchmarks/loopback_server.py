"""Start and stop a `genrec serve` process on 127.0.0.1 for a benchmark: the load test and
the reliability probe wait for it the same way."""

from __future__ import annotations

import subprocess
import time
from typing import Callable

import httpx


def wait_until_healthy(process: subprocess.Popen, url: str, log_tail: Callable[[], str], seconds: float = 600) -> None:
    """Return once `url/healthz` answers 200; raise with the server's last output if it exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log_tail()}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"server did not become healthy in {seconds:.0f} s")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 20 s."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
