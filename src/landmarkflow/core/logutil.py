"""Logging for workflow jobs: route the package's log records to the rule's ``log:`` file."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import traceback
from pathlib import Path

from .errors import InputError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Stopped(SystemExit):
    """The job was stopped by a signal (SIGTERM: Snakemake stopping, a scheduler's time limit or
    preemption). Raised where the job is, so that its temporary outputs are removed on the way out."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signal = signal.Signals(signum).name


def _stop(signum, frame):
    signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
    raise Stopped(signum)


@contextlib.contextmanager
def log_to(path, level=logging.INFO):
    """Send log records (and the traceback of an error) to ``path`` for the duration of a job.

    The package's warnings go to standard error too, so that they reach the console. Bad input
    (:class:`~landmarkflow.core.errors.InputError`) is the user's to fix, not a bug: its message is written
    once, to the log and to standard error, without a traceback, and the job exits with status 1. SIGTERM
    stops the job at the next Python instruction (:class:`Stopped`; a long call into C, such as an ANTs
    registration, finishes first): its temporary outputs are removed, the log says so in one line, and the
    job exits with 128 + 15. (SIGKILL leaves temporary files, which the next writer of the
    same output removes: :func:`~landmarkflow.core.files.atomic_path`.)
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
    main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _stop) if main else None
    try:
        yield
    except Stopped as err:
        handler.stream.write(f"STOPPED: the job received {err.signal}; its unfinished outputs were removed "
                             f"(an interrupted training resumes from its last checkpoint when the job runs again)\n")
        handler.flush()
        print(f"landmarkflow: stopped by {err.signal}", file=sys.stderr, flush=True)
        raise
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
        if main:
            signal.signal(signal.SIGTERM, old_term)
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
