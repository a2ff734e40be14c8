"""Turn a BraTS-Reg folder into a cohort manifest.

BraTS-Reg cases are folders ``BraTSReg_<id>/`` holding
``BraTSReg_<id>_00_<days>_<modality>.nii.gz`` (baseline: pre-operative),
``BraTSReg_<id>_01_<days>_<modality>.nii.gz`` (follow-up: post-operative) and
``..._landmarks.csv`` files in BraTS-Reg's LPS convention. The landmark files
are converted to the project's RAS CSV; images are referenced in place.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pandas as pd

from . import io
from .io import InputError

log = logging.getLogger(__name__)

FILE_RE = re.compile(
    r"^(?P<case>BraTSReg_[A-Za-z0-9]+)_(?P<tp>0[01])_(?P<days>\d+)_(?P<what>t1ce|t1|t2|flair|landmarks)\.(?P<ext>nii\.gz|nii|csv)$"
)
TIMEPOINT = {"00": "pre", "01": "post"}


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
                lm = io.read_brats_landmarks(f)
                dest = outdir / "landmarks" / f"{case_dir.name}_{tp}.csv"
                io.write_landmarks(lm, dest)
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
    io.write_table(df, outdir / "cohort.tsv")
    return df
