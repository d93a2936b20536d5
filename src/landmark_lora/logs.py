"""Logging for the whole package: one set-up, levels, and only rank 0 talks in multi-process runs.

    from landmark_lora.logs import get_logger
    log = get_logger(__name__)
    log.info("preprocess: %d photos", n)      # shown by default
    log.debug("cache key %s", key)            # shown with `landmark-lora -v ...`

    landmark-lora -v preprocess               # DEBUG
    landmark-lora -q run                      # warnings and errors only

Modules log; only ``cli`` configures handlers (``setup(verbosity)``; entry points started without it,
the training launcher and the toy-world build, call it themselves). Inside a flow run the retrain flow
sends the ``landmark_lora`` lines to the run's Prefect logs too (retrain.flow.capture_package_logs), at
INFO even with ``-q``: -q quietens the terminal, not the run's record.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

ROOT = "landmark_lora"
_FORMAT = "%(message)s"
_DEBUG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def get_logger(name: str) -> logging.Logger:
    """The module's logger under ``landmark_lora`` (``__name__`` already is)."""
    return logging.getLogger(name if name.startswith(ROOT) else f"{ROOT}.{name}")


def process_rank() -> int:
    """This process's rank under torchrun/accelerate (0 when not distributed)."""
    for var in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 0


class RankZeroFilter(logging.Filter):
    """Drops records from ranks > 0 below WARNING, so N processes print one log, but errors still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return process_rank() == 0 or record.levelno >= logging.WARNING


class _ConsoleHandler(logging.StreamHandler):
    """Writes to the given stream, else to ``sys.stdout`` as it is at each record: a caller that swaps
    stdout (pytest's capture, Prefect's log_prints) never leaves this handler on a closed file."""

    def __init__(self, stream: TextIO | None = None):
        super().__init__(stream or sys.stdout)
        self.fixed: TextIO | None = stream

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = self.fixed or sys.stdout
        super().emit(record)


def level_for(verbosity: int) -> int:
    """-q -> WARNING, default -> INFO, -v -> DEBUG."""
    return logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO


def setup(verbosity: int = 0, stream: TextIO | None = None) -> logging.Logger:
    """Configure the ``landmark_lora`` logger once (idempotent): plain messages on stdout (or ``stream``)."""
    logger = logging.getLogger(ROOT)
    level = level_for(verbosity)
    logger.setLevel(min(level, logging.INFO))  # the terminal follows -q; other handlers (Prefect) still get INFO
    handler = next((h for h in logger.handlers if getattr(h, "_landmark_lora", False)), None)
    if handler is None:
        handler = _ConsoleHandler(stream)
        handler._landmark_lora = True  # type: ignore[attr-defined]
        handler.addFilter(RankZeroFilter())
        logger.addHandler(handler)
    elif isinstance(handler, _ConsoleHandler):
        handler.fixed = stream
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(_DEBUG_FORMAT if verbosity > 0 else _FORMAT))
    logger.propagate = False
    return logger
