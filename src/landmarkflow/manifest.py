"""The cohort manifest: one tab-separated row per file.

Columns ``patient, timepoint, kind, name, path`` (see ``config/README.md``).
:func:`load_manifest` checks the table itself (columns, values, duplicates,
what every patient needs, that files exist) and :func:`validate_contents`
opens the files (readable images, finite voxels, masks on their image's grid
and neither empty nor full, landmark files well formed, inside their image and
outside the resection mask). Both collect every problem and raise one
:class:`~landmarkflow.io.InputError` that lists them, each with its row and
file, so a user fixes the manifest in one pass.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import io, spatial
from .io import InputError

log = logging.getLogger(__name__)

COLUMNS = ["patient", "timepoint", "kind", "name", "path"]
TIMEPOINTS = ("pre", "post")
KINDS = ("image", "mask", "landmarks")
MASK_NAMES = {"resection": "post", "tumor": "pre", "brain": None}  # name -> required timepoint
ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
DEFAULT_MODALITY_PREFERENCE = ("t1ce", "t1", "t2", "flair")


def _suggest(value: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(value, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass
class Manifest:
    """A validated manifest. ``table`` has the columns of :data:`COLUMNS` plus ``row``
    (the 1-based line number in the file, header = line 1) with ``path`` resolved
    (relative to the working directory when inside it, else absolute)."""

    table: pd.DataFrame
    source: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def patients(self) -> list[str]:
        return list(dict.fromkeys(self.table["patient"]))

    def rows(self, patient, timepoint=None, kind=None, name=None) -> pd.DataFrame:
        t = self.table[self.table["patient"] == patient]
        for col, val in (("timepoint", timepoint), ("kind", kind), ("name", name)):
            if val is not None:
                t = t[t[col] == val]
        return t

    def path(self, patient, timepoint, kind, name) -> str | None:
        t = self.rows(patient, timepoint, kind, name)
        return None if t.empty else t["path"].iloc[0]

    def images(self, patient, timepoint) -> dict[str, str]:
        t = self.rows(patient, timepoint, "image")
        return dict(zip(t["name"], t["path"]))

    def common_modalities(self, patient) -> list[str]:
        pre, post = self.images(patient, "pre"), self.images(patient, "post")
        return [m for m in pre if m in post]

    def check_modalities(self, settings: dict[str, list]) -> None:
        """Raise an :class:`InputError` when a configured list of modalities (``{"agent.modalities":
        [...], ...}``) names one that a patient lacks at either time point; one line per patient and key."""
        problems = []
        for key, mods in settings.items():
            for patient in self.patients:
                common = self.common_modalities(patient)
                missing = [m for m in mods or [] if m not in common]
                if missing:
                    problems.append(f"{key} {missing}: patient {patient} has {', '.join(common) or 'no modality'} "
                                    f"at both time points (set {key} to a subset of those, or [] for the reference modality)")
        if problems:
            raise InputError(f"{self.source}: the config asks for modalities the manifest does not have:\n  "
                             + "\n  ".join(problems))

    def reference_modality(self, patient, preference=DEFAULT_MODALITY_PREFERENCE) -> str:
        common = self.common_modalities(patient)
        for m in preference:
            if m in common:
                return m
        return sorted(common)[0]

    def annotators(self, patient, timepoint) -> list[str]:
        return list(self.rows(patient, timepoint, "landmarks")["name"])

    def files(self) -> list[str]:
        return list(self.table["path"])


def load_manifest(path, check_files: bool | Callable[[Path], bool] = True) -> Manifest:
    """Read and check a manifest; raise :class:`InputError` listing every problem.

    ``check_files`` may be ``False`` to skip the existence check, or a function
    of a path that says whether that file must exist now (the workflow defers
    the files its own rules create, such as the demo cohort);
    :func:`validate_contents` must then run once they exist.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: manifest not found")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment=None)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a tab-separated table ({err})") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        hint = " (is the file tab separated?)" if len(df.columns) == 1 else ""
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}{hint}")
    df = df[COLUMNS].apply(lambda s: s.str.strip())
    df.insert(0, "row", np.arange(2, len(df) + 2))
    df = df[(df[COLUMNS] != "").any(axis=1)]  # blank lines
    problems: list[str] = []

    def bad(row, msg):
        problems.append(f"{path}, row {row}: {msg}")

    if df.empty:
        raise InputError(f"{path}: the manifest has no rows")
    base = path.resolve().parent
    resolved = []
    for r in df.itertuples(index=False):
        if not ID_RE.match(r.patient):
            bad(r.row, f"patient {r.patient!r} must match [A-Za-z0-9_-]+")
        if r.timepoint not in TIMEPOINTS:
            bad(r.row, f"timepoint {r.timepoint!r} is not one of {', '.join(TIMEPOINTS)}{_suggest(r.timepoint, TIMEPOINTS)}")
        if r.kind not in KINDS:
            bad(r.row, f"kind {r.kind!r} is not one of {', '.join(KINDS)}{_suggest(r.kind, KINDS)}")
        if not ID_RE.match(r.name):
            bad(r.row, f"name {r.name!r} must match [A-Za-z0-9_-]+ (a modality, mask name or annotator)")
        if r.kind == "mask":
            if r.name not in MASK_NAMES:
                bad(r.row, f"mask name {r.name!r} is not one of {', '.join(MASK_NAMES)}{_suggest(r.name, MASK_NAMES)}")
            elif MASK_NAMES[r.name] not in (None, r.timepoint):
                bad(r.row, f"a {r.name} mask belongs to the {MASK_NAMES[r.name]}-operative scan, not {r.timepoint!r}")
        if r.path == "":
            bad(r.row, "empty path")
            resolved.append("")
            continue
        p = Path(os.path.expanduser(r.path))
        p = p if p.is_absolute() else base / p
        p = Path(os.path.normpath(p))
        if check_files is True or (callable(check_files) and check_files(p)):
            if not p.exists():
                bad(r.row, f"file {p} not found")
            elif not p.is_file():
                bad(r.row, f"{p} is not a file")
            elif not os.access(p, os.R_OK):
                bad(r.row, f"file {p} is not readable")
        resolved.append(_display_path(p))
    df["path"] = resolved

    key = ["patient", "timepoint", "kind", "name"]
    for _, grp in df[df.duplicated(key, keep=False)].groupby(key, sort=False):
        rows = ", ".join(str(x) for x in grp["row"])
        p, t, k, n = grp.iloc[0][key]
        problems.append(f"{path}, rows {rows}: duplicate entry patient={p} timepoint={t} kind={k} name={n}")
    for _, grp in df[df.duplicated("path", keep=False) & (df["path"] != "")].groupby("path", sort=False):
        rows = ", ".join(str(x) for x in grp["row"])
        problems.append(f"{path}, rows {rows}: the same file {grp.iloc[0]['path']} is listed more than once")

    for patient, grp in df.groupby("patient", sort=False):
        rows = ", ".join(str(x) for x in grp["row"])
        where = f"{path}, patient {patient} (rows {rows})"
        imgs = {t: set(grp[(grp.timepoint == t) & (grp.kind == "image")]["name"]) for t in TIMEPOINTS}
        for t in TIMEPOINTS:
            if not imgs[t]:
                problems.append(f"{where}: no {t}-operative image")
        if imgs["pre"] and imgs["post"] and not imgs["pre"] & imgs["post"]:
            problems.append(
                f"{where}: no modality common to both time points (pre: {', '.join(sorted(imgs['pre']))}; "
                f"post: {', '.join(sorted(imgs['post']))})"
            )
        if grp[(grp.timepoint == "post") & (grp.kind == "landmarks")].empty:
            problems.append(f"{where}: no post-operative landmark file (a row with timepoint=post, kind=landmarks)")
    if problems:
        raise InputError(_join(problems))

    m = Manifest(df.reset_index(drop=True), path)
    for patient in m.patients:
        pre, post = set(m.images(patient, "pre")), set(m.images(patient, "post"))
        only = sorted(pre ^ post)
        if only:
            m.warnings.append(f"patient {patient}: modalities {', '.join(only)} exist at one time point only and are not used")
        if m.path(patient, "post", "mask", "resection") is None:
            m.warnings.append(f"patient {patient}: no post-operative resection mask: the guided agent is skipped")
        post_ann = set(m.annotators(patient, "post"))
        if m.annotators(patient, "pre") and not post_ann & set(m.annotators(patient, "pre")):
            m.warnings.append(
                f"patient {patient}: no pre-operative landmark file has the post-operative annotator's name "
                f"({', '.join(sorted(post_ann))}): there is no ground truth; pre-operative annotations are scored as methods"
            )
    for w in m.warnings:
        log.warning(w)
    return m


def validate_contents(m: Manifest) -> Manifest:
    """Open every file of the manifest and check it; raise listing every problem.

    Checks: images readable, 3D, finite; masks on the grid of an image of the
    same time point, binary, neither empty nor full; landmark files well
    formed, inside the time point's images and, post-operatively, outside the
    resection mask; landmark identifiers of the pre-operative files present in
    the post-operative file.
    """
    problems: list[str] = []
    src = m.source
    for patient in m.patients:
        for tp in TIMEPOINTS:
            grids = {}
            for r in m.rows(patient, tp, "image").itertuples():
                try:
                    img = io.read_image(r.path)
                except InputError as err:
                    problems.append(f"{src}, row {r.row}: {err}")
                    continue
                n_bad = int(np.count_nonzero(~np.isfinite(img.data)))
                if n_bad:
                    problems.append(f"{src}, row {r.row}: {r.path} has {n_bad} NaN or infinite voxels")
                elif float(img.data.max()) == float(img.data.min()):
                    problems.append(f"{src}, row {r.row}: {r.path} is constant ({float(img.data.min())}): an empty image?")
                grids[r.name] = (img.shape, img.affine)
            masks = {}
            for r in m.rows(patient, tp, "mask").itertuples():
                try:
                    mask = io.read_image(r.path, dtype=None)
                except InputError as err:
                    problems.append(f"{src}, row {r.row}: {err}")
                    continue
                problems += [f"{src}, row {r.row}: {p}" for p in _mask_problems(mask, r.path, grids)]
                masks[r.name] = mask
            for r in m.rows(patient, tp, "landmarks").itertuples():
                try:
                    lm = io.read_landmarks(r.path)
                except InputError as err:
                    problems.append(f"{src}, row {r.row}: {err}")
                    continue
                for modality, (shape, affine) in grids.items():
                    inside = spatial.inside_image(io.points_of(lm), affine, shape)
                    for lid, pt in zip(lm["landmark"][~inside], io.points_of(lm)[~inside]):
                        problems.append(
                            f"{src}, row {r.row}: {r.path}: landmark {lid} at RAS ({pt[0]:.1f}, {pt[1]:.1f}, {pt[2]:.1f}) mm "
                            f"lies outside the {tp}-operative {modality} image; expected world RAS mm (not voxel indices or LPS)"
                        )
                if tp == "post":  # identifiers become file names and Snakemake wildcards
                    for lid in lm["landmark"]:
                        if not ID_RE.match(lid):
                            problems.append(f"{src}, row {r.row}: {r.path}: landmark identifier {lid!r} must match [A-Za-z0-9_-]+")
                # post-op landmarks inside the cavity cannot be redetected; pre-op ones in the tumour are suspect
                check = {"post": "resection", "pre": "tumor"}[tp]
                if check in masks:
                    inside_mask = _inside_mask(masks[check], io.points_of(lm))
                    for lid in lm["landmark"][inside_mask]:
                        msg = f"{src}, row {r.row}: {r.path}: landmark {lid} lies inside the {check} mask"
                        if tp == "post":
                            problems.append(msg + "; a landmark must be on tissue that exists at both time points")
                        else:
                            m.warnings.append(msg)
        post_ids: set[str] = set()
        for r in m.rows(patient, "post", "landmarks").itertuples():
            try:
                post_ids |= set(io.read_landmarks(r.path)["landmark"])
            except InputError:
                pass
        for r in m.rows(patient, "pre", "landmarks").itertuples():
            try:
                ids = set(io.read_landmarks(r.path)["landmark"])
            except InputError:
                continue
            unknown = sorted(ids - post_ids)
            if unknown and post_ids:
                m.warnings.append(
                    f"{src}, row {r.row}: pre-operative landmarks {', '.join(unknown)} have no post-operative counterpart and are ignored"
                )
    if problems:
        raise InputError(_join(problems))
    return m


def validate_to(manifest_path, table_out, warnings_out) -> Manifest:
    """Check a manifest and its files; write the resolved table and the warnings (TSV)."""
    m = validate_contents(load_manifest(manifest_path))
    io.write_table(m.table[["patient", "timepoint", "kind", "name", "path", "row"]], table_out)
    io.write_table(pd.DataFrame({"warning": m.warnings}, dtype=str), warnings_out)
    return m


def _mask_problems(mask: io.Image, path, grids) -> list[str]:
    out = []
    if grids and not any(mask.shape == s and np.allclose(mask.affine, a, atol=1e-3) for s, a in grids.values()):
        shapes = "; ".join(f"{k}: {s}" for k, (s, _) in grids.items())
        out.append(
            f"{path}: mask grid (shape {mask.shape}, spacing {np.round(mask.spacing, 3).tolist()}) matches none of the "
            f"time point's images ({shapes}); resample the mask onto its image"
        )
    values = np.unique(mask.data)
    if values.size > 16 or np.any(~np.isfinite(values)):
        out.append(f"{path}: expected a label mask (0 = background, labels > 0), found {values.size} distinct values: an image?")
    n = int(np.count_nonzero(mask.data))
    if n == 0:
        out.append(f"{path}: the mask is empty")
    elif n == mask.data.size:
        out.append(f"{path}: the mask covers the whole image (all voxels non-zero)")
    return out


def _inside_mask(mask: io.Image, xyz) -> np.ndarray:
    ijk = np.rint(spatial.world_to_voxel(np.atleast_2d(xyz), mask.affine)).astype(int)
    ok = np.all((ijk >= 0) & (ijk < np.array(mask.shape)), axis=1)
    out = np.zeros(len(ijk), bool)
    out[ok] = mask.data[tuple(ijk[ok].T)] != 0
    return out


def _display_path(p: Path) -> str:
    """Relative to the working directory when inside it (so paths match Snakemake outputs), else absolute."""
    p = Path(os.path.abspath(p))
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _join(problems: list[str]) -> str:
    head = f"{len(problems)} problem(s) in the cohort manifest:" if len(problems) > 1 else "problem in the cohort manifest:"
    return head + "\n  - " + "\n  - ".join(problems)
