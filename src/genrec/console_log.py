"""Where the library's log records go when genrec runs as a command.

Library modules only ever call `logging.getLogger(__name__)`: a program that
imports genrec decides where (and whether) those records are shown. The `genrec`
command is such a program, and `configure_logging` is its one decision: records
of the `genrec` logger at `level` and above, as plain lines on stderr, so stdout
stays the command's result (JSON, a table) and can be piped.

Lines are written through `tqdm.write`, which clears a running progress bar,
writes the line and redraws the bar; a plain stream handler would cut the bar
in half on every record.
"""

from __future__ import annotations

import logging
import os
import sys

LEVEL_ENV = "GENREC_LOG_LEVEL"
LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_level(requested: str | None = None) -> int:
    """The level to log at: `requested` (the CLI's --log-level), else $GENREC_LOG_LEVEL, else INFO.

    Raises ValueError naming where an unknown level came from."""
    source, name = ("--log-level", requested) if requested else (LEVEL_ENV, os.environ.get(LEVEL_ENV) or "info")
    if name.lower() not in LEVELS:
        raise ValueError(f"{source}: unknown log level {name!r}; expected one of {', '.join(LEVELS)}")
    return logging.getLevelNamesMapping()[name.upper()]


def configure_logging(level: int) -> None:
    """Send `genrec.*` records at `level` and above to stderr, once: a second call (tests run
    `main` many times in one process) replaces the handler instead of adding another.

    Under torchrun, ranks other than 0 log warnings and errors only: every rank runs the same
    code, and the progress lines of N processes would otherwise all be printed N times."""
    if int(os.environ.get("RANK", "0")) > 0:
        level = max(level, logging.WARNING)
    logger = logging.getLogger("genrec")
    for handler in [h for h in logger.handlers if isinstance(h, StderrHandler)]:
        logger.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(level)


class StderrHandler(logging.Handler):
    """Writes to whatever `sys.stderr` is when the record is emitted (not when the handler was
    made), through `tqdm.write` so progress bars are redrawn below the line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never raise into the code that logged
            self.handleError(record)
