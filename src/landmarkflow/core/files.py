"""Outputs that appear whole or not at all, and tables.

Every writer of the package goes through :func:`atomic_path` (a file) or :func:`atomic_dir` (a folder):
the output is written beside its place under a temporary name and renamed onto it when it is complete,
so that an interrupted job never leaves a half-written output that a later job would read. A job killed
outright (SIGKILL, a node lost) leaves its temporary files behind; the next writer of the same output
removes them (one job writes an output at a time: Snakemake's rule).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from .errors import InputError


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    # keep the full suffix (".nii.gz") so writers that look at the extension still work
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside ``path``; when the block succeeds it replaces ``path`` (an older folder
    there is removed), otherwise it is removed: the folder appears whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_stale(path: Path) -> None:
    """Remove the temporary files and folders a killed writer of ``path`` left beside it: exactly the names
    :func:`atomic_path` and :func:`atomic_dir` make for it (``.<name>.<8 random characters>.part...`` and
    ``.old``), so that no other output's temporary file can match."""
    import re

    if not path.parent.is_dir():
        return
    own = re.compile(rf"\.{re.escape(path.name)}\.[A-Za-z0-9_]{{8}}\.(part.*|old)")
    for stale in path.parent.iterdir():
        if not own.fullmatch(stale.name):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_table(df: pd.DataFrame, path, sep: str = "\t", float_format: str | None = None) -> None:
    """Write a table atomically (TSV by default)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep=sep, index=False, float_format=float_format)


def existing_file(path, what: str) -> Path:
    """``path`` as a Path, or an :class:`InputError` that says why ``what`` (an image, a landmark file) cannot be read."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    if not path.is_file():
        raise InputError(f"{path}: {what} is not a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: {what} is not readable (permissions)")
    return path


def first_line(err: Exception) -> str:
    """The informative line of a library's error message (its last non-empty line)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__
