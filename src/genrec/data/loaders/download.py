"""Fetching public data files for users who have internet.

Downloads resume from a partial file (HTTP Range), are checked against a
SHA-256 when one is known, and land atomically, so an interrupted download is
never mistaken for a complete one. Offline, the error says which file to fetch
by hand and where to put it. Tests never call this: they use local files.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A public data file could not be fetched or failed its checksum."""


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, timeout: float = 30.0) -> Path:
    """Fetch `url` to `dest` unless it is already there (and matches `sha256`)."""
    dest = Path(dest)
    if dest.exists() and (sha256 is None or _sha256(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if have and response.status != 206:
                have = 0  # the server ignored the range: start over
            total = int(response.headers.get("Content-Length", 0)) + have
            with open(partial, "ab" if have else "wb") as out, tqdm(
                total=total or None, initial=have, unit="B", unit_scale=True, desc=dest.name
            ) as bar:
                while block := response.read(CHUNK):
                    out.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise DownloadError(
            f"could not download {url} ({error}). If this machine is offline, fetch the file "
            f"elsewhere and place it at {dest}; a partial download is kept at {partial} and resumes."
        ) from error
    if sha256 is not None and (actual := _sha256(partial)) != sha256:
        partial.unlink()
        raise DownloadError(f"{url}: checksum {actual} does not match the expected {sha256}; the file was removed")
    os.replace(partial, dest)
    return dest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()
