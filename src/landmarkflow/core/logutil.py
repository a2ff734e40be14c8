"""Logging for workflow jobs: route the package's log records to the rule's ``log:`` file."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from pathlib import Path

from .errors import InputError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def log_to(path, level=logging.INFO):
    """Send log records (and the traceback of an error) to ``path`` for the duration of a job.

    The package's warnings go to standard error too, so that they reach the console. Bad input
    (:class:`~landmarkflow.core.errors.InputError`) is the user's to fix, not a bug: its message is written
    once, to the log and to standard error, without a traceback, and the job exits with status 1.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter(FORMAT))
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    package = logging.getLogger("landmarkflow")
    root = logging.getLogger()
    root.addHandler(handler)
    package.addHandler(console)
    old = root.level
    root.setLevel(level)
    logging.captureWarnings(True)
    try:
        yield
    except InputError as err:
        handler.stream.write(f"ERROR: {err}\n")
        handler.flush()
        print(f"landmarkflow: error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except BaseException:
        handler.stream.write(traceback.format_exc())
        handler.flush()
        raise
    finally:
        root.removeHandler(handler)
        package.removeHandler(console)
        root.setLevel(old)
        handler.close()


def progress(done: int, total: int, elapsed_s: float) -> str:
    """``"done/total (p%), elapsed s, ETA s"`` for a progress line, the ETA from the pace so far."""
    share = done / total if total else 1.0
    eta = elapsed_s / done * (total - done) if done else float("nan")
    return f"{done}/{total} ({100 * share:.0f}%), {elapsed_s:.0f} s, ETA {eta:.0f} s"


def setup_cli(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT, stream=sys.stderr)
