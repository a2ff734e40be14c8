"""Turn a BraTS-Reg folder into a cohort manifest.

BraTS-Reg cases are folders ``BraTSReg_<id>/`` holding
``BraTSReg_<id>_00_<days>_<modality>.nii.gz`` (baseline: pre-operative),
``BraTSReg_<id>_01_<days>_<modality>.nii.gz`` (follow-up: post-operative) and
``..._landmarks.csv`` files in BraTS-Reg's LPS convention. The landmark files
are converted to the project's RAS CSV; images are referenced in place. The landmark files' own
convention is read and written here (:func:`read_brats_landmarks`, :func:`write_brats_landmarks`).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pandas as pd

from ..core.errors import InputError
from ..core.files import existing_file, write_table
from ..imaging import spatial
from .landmarks import BRATS_COLUMNS, LANDMARK_COLUMNS, check_points, csv_header, points_of, write_landmarks

log = logging.getLogger(__name__)

FILE_RE = re.compile(
    r"^(?P<case>BraTSReg_[A-Za-z0-9]+)_(?P<tp>0[01])_(?P<days>\d+)_(?P<what>t1ce|t1|t2|flair|landmarks)\.(?P<ext>nii\.gz|nii|csv)$"
)
TIMEPOINT = {"00": "pre", "01": "post"}


# BraTS-Reg: "Landmark,X,Y,Z" in ITK physical (LPS) mm; on their 240x240x155 grid
# (origin (0, -239, 0), identity direction) the voxel index is (X, Y + 239, Z).
def read_brats_landmarks(path) -> pd.DataFrame:
    """Read a BraTS-Reg landmark file (LPS) into the project's RAS landmark table."""
    path = existing_file(path, "landmark file")
    header = csv_header(path)
    if header[:4] != BRATS_COLUMNS:  # exact: the lower-case header is the project's RAS format
        raise InputError(f"{path}: header {','.join(header) or '(empty)'} is not a BraTS-Reg landmark header 'Landmark,X,Y,Z'")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.columns = [c.strip() for c in df.columns]
    df = df.rename(columns={h: c for h, c in zip(df.columns[:4], LANDMARK_COLUMNS)})
    df = check_points(df, path, LANDMARK_COLUMNS)
    df[["x", "y", "z"]] = spatial.lps_to_ras(points_of(df))
    return df


def write_brats_landmarks(df: pd.DataFrame, path, float_format: str = "%.4f") -> None:
    """Write a RAS landmark table as a BraTS-Reg file (``Landmark,X,Y,Z``, LPS)."""
    lps = spatial.ras_to_lps(points_of(df))
    out = pd.DataFrame({"Landmark": df["landmark"].astype(str), "X": lps[:, 0], "Y": lps[:, 1], "Z": lps[:, 2]})
    write_table(out, path, sep=",", float_format=float_format)


def cases(root) -> list[Path]:
    """The case folders under ``root`` (or ``root`` itself when it is one)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    if root.name.startswith("BraTSReg_"):
        return [root]
    found = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("BraTSReg_"))
    if not found:
        raise InputError(f"{root}: no BraTSReg_* case folders found")
    return found


def make_manifest(root, outdir, annotator: str = "expert") -> pd.DataFrame:
    """Write ``outdir/cohort.tsv`` and ``outdir/landmarks/<case>_<timepoint>.csv``; return the manifest.

    Cases without follow-up (post-operative) landmarks cannot be used and are
    skipped with a warning; image paths are written relative to ``outdir``.
    """
    outdir = Path(outdir)
    rows = []
    skipped = []
    for case_dir in cases(root):
        files = {}
        for f in sorted(case_dir.iterdir()):
            m = FILE_RE.match(f.name)
            if not m:
                continue
            if m["case"] != case_dir.name:
                raise InputError(f"{f}: file of case {m['case']} inside folder {case_dir.name}")
            files[(TIMEPOINT[m["tp"]], m["what"])] = f
        if ("post", "landmarks") not in files:
            skipped.append(case_dir.name)
            continue
        case_rows = []
        for (tp, what), f in sorted(files.items()):
            if what == "landmarks":
                lm = read_brats_landmarks(f)
                dest = outdir / "landmarks" / f"{case_dir.name}_{tp}.csv"
                write_landmarks(lm, dest)
                case_rows.append((tp, "landmarks", annotator, dest))
            else:
                case_rows.append((tp, "image", what, f))
        for tp, kind, name, path in case_rows:
            rel = os.path.relpath(Path(path).resolve(), outdir.resolve())
            rows.append({"patient": case_dir.name, "timepoint": tp, "kind": kind, "name": name, "path": rel})
    if skipped:
        log.warning("skipped %d case(s) without follow-up landmarks: %s", len(skipped), ", ".join(skipped))
    if not rows:
        raise InputError(f"{root}: no case has a follow-up (_01_) landmark file")
    df = pd.DataFrame(rows)
    write_table(df, outdir / "cohort.tsv")
    return df
