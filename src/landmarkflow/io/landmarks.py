"""Landmark files: the project's CSV (``landmark,x,y,z``, world RAS mm) and, read the same way, 3D Slicer's
markups files (:mod:`.markups`).

:func:`read_landmarks` checks what it reads and raises :class:`~landmarkflow.core.errors.InputError` naming
the file and the row; every writer is atomic (:mod:`landmarkflow.core.files`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import layout
from ..core.errors import InputError
from ..core.files import existing_file, wide_encoding_problem, write_table
from ..imaging import spatial
from . import markups

LANDMARK_COLUMNS = ["landmark", "x", "y", "z"]
BRATS_COLUMNS = ["Landmark", "X", "Y", "Z"]  # BraTS-Reg's header (read by .brats, recognised here)

def read_landmarks(path, image_shape=None, image_affine=None) -> pd.DataFrame:
    """Read a landmark CSV (``landmark,x,y,z``, world RAS mm), or a 3D Slicer markups file (``.mrk.json``,
    ``.fcsv``: its coordinate system read from the file, its labels as identifiers; :mod:`.markups`), or
    Slicer's control-point table saved as CSV (``label,r,a,s,...`` or ``label,l,p,s,...``).

    Returns a DataFrame with a string ``landmark`` column and float ``x, y, z``
    (extra columns are kept as they are); labels that cannot be identifiers are mapped to ones, the
    labels kept in a ``label`` column (:func:`with_identifiers`). Raises :class:`InputError` naming the
    file and the row for a wrong header, an empty file, a duplicated
    identifier or a value that is not a finite number. With ``image_shape`` and
    ``image_affine``, points outside that image are an error too.
    """
    return with_identifiers(_read(path, image_shape, image_affine), path)


def _read(path, image_shape=None, image_affine=None) -> pd.DataFrame:
    path = existing_file(path, "landmark file")
    if problem := wide_encoding_problem(path, "the landmark file"):
        raise InputError(problem)
    if markups.is_markups(path):
        try:
            df = markups.read_markups(path)
        except markups.MarkupsError as err:
            raise InputError(f"{path}: {err}") from None
        return check_points(df, path, LANDMARK_COLUMNS, image_shape, image_affine)
    header = csv_header(path)
    if system := markups.table_system(header):  # Slicer's control-point table
        try:
            df = markups.read_table(path, system)
        except markups.MarkupsError as err:
            raise InputError(f"{path}: {err}") from None
        return check_points(df, path, LANDMARK_COLUMNS, image_shape, image_affine)
    if [h.lower() for h in header[:4]] == [c.lower() for c in BRATS_COLUMNS] and header[:4] != LANDMARK_COLUMNS:
        raise InputError(
            f"{path}: header {','.join(header)} looks like a BraTS-Reg file (LPS, 'Landmark,X,Y,Z'); "
            f"expected 'landmark,x,y,z' in RAS mm. Convert it with `landmarkflow brats-manifest` "
            f"or landmarkflow.io.brats.read_brats_landmarks"
        )
    missing = [c for c in LANDMARK_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}: header {','.join(header) or '(empty)'} lacks column(s) {', '.join(missing)}; expected 'landmark,x,y,z'")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    return check_points(df, path, LANDMARK_COLUMNS, image_shape, image_affine)


def with_identifiers(df: pd.DataFrame, path) -> pd.DataFrame:
    """Landmark labels that cannot be identifiers (``Point 1``: identifiers become file names and wildcards)
    become ones (``Point_1``, :func:`.layout.safe_identifier`); the labels as given are kept in a ``label``
    column. Two labels that would give one identifier are an error naming both."""
    raw = df["landmark"].astype(str)
    ids = raw.map(layout.safe_identifier)
    if (ids == raw).all():
        return df
    for lid, labels in raw.groupby(ids.to_numpy()):
        if labels.nunique() > 1:
            a, b = labels.unique()[:2]
            raise InputError(f"{path}: the labels {a!r} and {b!r} both become the identifier {lid!r} (identifiers hold "
                             f"letters, digits, _ and -: they name files); rename one of them")
    if "label" not in df.columns:
        df.insert(4 if len(df.columns) >= 4 else len(df.columns), "label", raw.to_numpy())
    df["landmark"] = ids.to_numpy()
    return df


def write_landmarks(df: pd.DataFrame, path, float_format: str = "%.4f") -> None:
    """Write ``landmark,x,y,z`` (+ any extra columns of ``df``) atomically."""
    missing = [c for c in LANDMARK_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"landmark table lacks column(s) {missing}")
    cols = LANDMARK_COLUMNS + [c for c in df.columns if c not in LANDMARK_COLUMNS]
    out = df[cols].copy()
    out["landmark"] = out["landmark"].astype(str)
    write_table(out, path, sep=",", float_format=float_format)


def landmarks_frame(ids, xyz, **extra) -> pd.DataFrame:
    """Build a landmark table from identifiers and an (n, 3) array of RAS mm."""
    xyz = np.atleast_2d(np.asarray(xyz, dtype=float))
    df = pd.DataFrame({"landmark": [str(i) for i in ids], "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    for key, val in extra.items():
        df[key] = val
    return df


def points_of(df: pd.DataFrame) -> np.ndarray:
    """The (n, 3) array of ``x, y, z`` of a landmark table."""
    return df[["x", "y", "z"]].to_numpy(dtype=float)


def csv_header(path: Path) -> list[str]:
    """The stripped column names of a CSV file's first line; an :class:`InputError` for a file that is no UTF-8
    text (UTF-16 named as such), is separated by another character than a comma, or repeats a column name (which
    pandas would rename, ``x`` and ``x.1``, and a reader would take the first of)."""
    if problem := wide_encoding_problem(path, "the file"):
        raise InputError(problem)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            row = next(csv.reader(fh), [])
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text CSV file") from None
    header = [h.strip() for h in row]
    if len(header) == 1:
        seps = [name for sep, name in ((";", "';'"), ("\t", "tabs")) if sep in header[0]]
        if seps:
            raise InputError(f"{path}: the header {header[0]!r} is one column: the file seems to be separated by "
                             f"{seps[0]}; landmark files are separated by commas, with decimal points (a spreadsheet's "
                             "'CSV (comma delimited)')")
    repeated = [h for h in dict.fromkeys(header) if h and header.count(h) > 1]
    if repeated:
        raise InputError(f"{path}: the header {','.join(header)} has the column(s) {', '.join(repeated)} more than "
                         "once; each column must appear once")
    return header


def check_points(df: pd.DataFrame, path, cols, image_shape=None, image_affine=None) -> pd.DataFrame:
    df.columns = [c.strip() for c in df.columns]
    if len(df) == 0:
        raise InputError(f"{path}: no landmarks (the file has a header and no rows)")
    df["landmark"] = df["landmark"].astype(str).str.strip()
    for idx, row in df.iterrows():
        line = idx + 2  # 1-based, after the header
        if row["landmark"] == "":
            raise InputError(f"{path}, line {line}: empty landmark identifier")
        for c in cols[1:]:
            raw = str(row[c]).strip()
            try:
                val = float(raw)
            except ValueError:
                raise InputError(f"{path}, line {line}: {c}={raw!r} is not a number (landmark {row['landmark']})") from None
            if not np.isfinite(val):
                raise InputError(f"{path}, line {line}: {c}={raw!r} is not a finite number (landmark {row['landmark']})")
    dup = df["landmark"][df["landmark"].duplicated()]
    if len(dup):
        lines = [int(i) + 2 for i in df.index[df["landmark"] == dup.iloc[0]]]
        raise InputError(f"{path}: landmark {dup.iloc[0]!r} appears more than once (lines {lines})")
    for c in cols[1:]:
        df[c] = df[c].astype(float)
    if image_shape is not None and image_affine is not None:
        inside = spatial.inside_image(points_of(df), image_affine, image_shape)
        if not inside.all():
            bad = df[~inside].iloc[0]
            raise InputError(
                f"{path}: landmark {bad['landmark']} at RAS ({bad['x']:.1f}, {bad['y']:.1f}, {bad['z']:.1f}) mm lies outside "
                f"its image (shape {tuple(image_shape)}); are the coordinates voxel indices or LPS instead of RAS mm?"
            )
    return df.reset_index(drop=True)
