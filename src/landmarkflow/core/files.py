"""Outputs that appear whole or not at all, and tables.

Every writer of the package goes through :func:`atomic_path` (a file) or :func:`atomic_dir` (a folder):
the output is written beside its place under a temporary name and renamed onto it when it is complete,
so that an interrupted job never leaves a half-written output that a later job would read. A job killed
outright (SIGKILL, a node lost) leaves its temporary files behind; the next writer of the same output
removes them (one job writes an output at a time: Snakemake's rule).
"""

from __future__ import annotations

import contextlib
import errno
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
        link = broken_link(path)
        raise InputError(f"{path}: {what} is {link}" if link else f"{path}: {what} not found")
    if not path.is_file():
        raise InputError(f"{path}: {what} is not a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: {what} is not readable (permissions)")
    return path


def broken_link(path) -> str | None:
    """Why a path that does not exist is a broken symbolic link, to say instead of "not found": ``a symbolic link
    loop`` or ``a symbolic link to <target>, which does not exist``; None when it is no broken link."""
    try:
        os.stat(path)
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symbolic link loop (following its links leads back to it)"
    if os.path.islink(path):
        target = os.readlink(path)
        shown = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), target))
        return f"a symbolic link to {shown}, which does not exist"
    return None


#: byte order marks of the encodings a text file of the project must not have, longest first
_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))
#: the bytes of plain ASCII text: tab, line ends and the printable characters
_PLAIN = [b in (9, 10, 13) or 32 <= b < 127 for b in range(256)]


def wide_encoding(data: bytes) -> str | None:
    """``UTF-16`` or ``UTF-32`` when the start of a file (``data``, a few KiB) is text in that encoding (a byte
    order mark, or ASCII text with NUL bytes between its characters, as a spreadsheet's "Unicode text"
    saves it), else None. Tells a text file saved in the wrong encoding from one that is no text at all."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    for width, name in ((4, "UTF-32"), (2, "UTF-16")):
        n = len(data) // width * width
        if n < 4 * width:
            continue
        units = [data[i:i + width] for i in range(0, n, width)]
        for pos in range(width):  # the byte of each unit that holds the character (little or big endian)
            text = sum(1 for u in units if _PLAIN[u[pos]] and all(b == 0 for k, b in enumerate(u) if k != pos))
            if text >= 0.9 * len(units):
                return name
    return None


def wide_encoding_problem(path, what: str) -> str | None:
    """The message for a text file (``what``: a manifest, a landmark file) saved as UTF-16 or UTF-32, or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    name = wide_encoding(head)
    if name is None:
        return None
    return f"{path}: {what} is saved as {name}; save it as UTF-8 (plain text; a spreadsheet's 'Unicode text' is {name})"


def first_line(err: Exception) -> str:
    """The informative line of a library's error message (its last non-empty line)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__
