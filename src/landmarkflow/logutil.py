"""Logging for workflow jobs: route the package's log records to the rule's ``log:`` file."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def log_to(path, level=logging.INFO):
    """Send log records (and the traceback of an error) to ``path`` for the duration of a job."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(level)
    logging.captureWarnings(True)
    try:
        yield
    except BaseException:
        handler.stream.write(traceback.format_exc())
        handler.flush()
        raise
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
        handler.close()


def setup_cli(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT, stream=sys.stderr)
