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
    """Send log records (and the traceback of an error) to ``path`` for the duration of a job.

    The package's warnings go to standard error too, so that they reach the console. Bad input
    (:class:`~landmarkflow.io.InputError`) is the user's to fix, not a bug: its message is written
    once, to the log and to standard error, without a traceback, and the job exits with status 1.
    """
    from .io import InputError

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


def setup_cli(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT, stream=sys.stderr)
