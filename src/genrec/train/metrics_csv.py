"""`metrics.csv` beside a run's checkpoints: the training curve as a file anyone can plot.

    step,loss,lr,examples_per_s,time,ndcg@10,recall@10
    50,4.812103,0.000505,2210.417,1765012345,,
    100,4.109302,0.001,2231.934,1765012347,0.0412,0.0731

One row every `TrainConfig.log_every` steps and at every evaluation (validation
columns are empty on the other rows); `loss` is the mean training loss since the
previous row, `examples_per_s` the global training rate over those steps
(evaluation time excluded), `time` the Unix time (seconds) the row was written. Read it
with `read_metrics(path)` or `pandas.read_csv(path)`.

Crash safety: a row is one `write` of one line followed by an fsync, so a crash
loses at most the row being written; a torn last line (no newline) is dropped
when the file is read or resumed. Changing the header (the first evaluation adds
its columns) and cutting rows on resume rewrite the whole file to a temporary
sibling and rename it, so the file is never half old and half new.

Resume: the loop restarts from `last.pt` at step S and takes exactly the steps
the crashed run took after S, so rows past S are dropped before training goes
on; the file then holds each step once.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

from genrec.artifacts import atomic_path

METRICS_FILE = "metrics.csv"
BASE_COLUMNS: tuple[str, ...] = ("step", "loss", "lr", "examples_per_s", "time")


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """The complete rows of a metrics.csv, numbers as floats (`step` as int), empty cells left out."""
    header, rows = _read(Path(path))
    return [{name: (int(float(value)) if name == "step" else float(value))
             for name, value in zip(header, row) if value != ""} for row in rows]


class MetricsCSV:
    """Appends rows to `path`. `keep_until=None` starts a new file; an int keeps the rows up to
    that step of an existing file (the step a resumed run continues from) and appends after them."""

    def __init__(self, path: str | os.PathLike, keep_until: int | None = None):
        self.path = Path(path)
        header, rows = _read(self.path) if keep_until is not None else ([], [])
        self.columns: list[str] = list(header) or list(BASE_COLUMNS)
        step = self.columns.index("step")
        kept = [row for row in rows if int(float(row[step])) <= (keep_until or 0)]
        self.last_step = max((int(float(row[step])) for row in kept), default=0)
        self._rewrite(kept)

    def append(self, row: dict[str, float]) -> None:
        """Write one row (keys: `BASE_COLUMNS` and any metric names; a new name adds a column)."""
        if "step" not in row:
            raise ValueError(f"row has no 'step'; got keys {sorted(row)}")
        row = {"time": int(time.time()), **row}
        new = [name for name in row if name not in self.columns]
        if new:
            _, rows = _read(self.path)
            self.columns += new
            self._rewrite(rows)
        with open(self.path, "a", encoding="utf-8", newline="") as out:
            out.write(_line([_cell(row.get(name)) for name in self.columns]))
            out.flush()
            os.fsync(out.fileno())
        self.last_step = int(row["step"])

    def _rewrite(self, rows: list[list[str]]) -> None:
        width = len(self.columns)
        with atomic_path(self.path) as tmp:
            tmp.write_text(_line(self.columns) + "".join(_line(r + [""] * (width - len(r))) for r in rows),
                           encoding="utf-8")


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and complete rows; a last line without its newline (a torn write) is dropped."""
    if not path.exists():
        return [], []
    text = path.read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]
    lines = list(csv.reader(io.StringIO(complete)))
    return (lines[0], [line for line in lines[1:] if line]) if lines else ([], [])


def _line(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


def _cell(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return f"{value:.7g}"
