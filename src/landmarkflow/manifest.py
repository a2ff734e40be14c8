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
from io import StringIO
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy import ndimage

from . import io, spatial
from .io import InputError

log = logging.getLogger(__name__)

COLUMNS = ["patient", "timepoint", "kind", "name", "path"]
TIMEPOINTS = ("pre", "post")
KINDS = ("image", "mask", "landmarks")
MASK_NAMES = {"resection": "post", "tumor": "pre", "brain": None}  # name -> required timepoint
ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
#: longest identifier (patient, name, landmark): they become parts of file names, which may have 255 bytes
MAX_ID = 64
DEFAULT_MODALITY_PREFERENCE = ("t1ce", "t1", "t2", "flair")


def identifier_problem(value: str, what: str) -> str | None:
    """Why ``value`` cannot be an identifier (patient, modality, annotator, landmark), or None."""
    if not ID_RE.match(value):
        return f"{what} {value!r} must match [A-Za-z0-9_-]+"
    if len(value) > MAX_ID:
        return f"{what} {value[:20]!r}... has {len(value)} characters; at most {MAX_ID} (it becomes part of file names)"
    return None


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
    annotator: str | None = None  # the configured primary annotator (None: each patient's only post-op one)

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

    def primary_annotator(self, patient) -> str:
        """The annotator whose post-op landmarks are redetected (and whose pre-op file is the ground truth):
        the configured one, or the patient's only post-op annotator (:func:`load_manifest` checks both)."""
        return self.annotator or self.annotators(patient, "post")[0]

    def files(self) -> list[str]:
        return list(self.table["path"])


def load_manifest(path, check_files: bool | Callable[[Path], bool] = True, annotator: str | None = None) -> Manifest:
    """Read and check a manifest; raise :class:`InputError` listing every problem.

    ``check_files`` may be ``False`` to skip the existence check, or a function
    of a path that says whether that file must exist now (the workflow defers
    the files its own rules create, such as the demo cohort);
    :func:`validate_contents` must then run once they exist. ``annotator``
    (config ``landmarks.annotator``) names the post-op annotator whose landmarks
    are redetected; without it every patient must have exactly one. Lines
    starting with ``#`` are comments. Warnings are collected in
    ``Manifest.warnings`` for the caller to report (once).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: manifest not found")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not a text file ({err})") from None
    kept = [(n, line) for n, line in enumerate(lines, start=1) if line.strip() and not line.lstrip().startswith("#")]
    if not kept:
        raise InputError(f"{path}: the manifest has no header and no rows")
    try:
        df = pd.read_csv(StringIO("\n".join(line for _, line in kept)), sep="\t", dtype=str, keep_default_na=False)
    except pd.errors.ParserError as err:
        raise InputError(f"{path}: not a tab-separated table ({err})") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        hint = " (is the file tab separated?)" if len(df.columns) == 1 else ""
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}{hint}")
    df = df[COLUMNS].apply(lambda s: s.str.strip())
    df.insert(0, "row", [n for n, _ in kept[1:]])  # the file's own line numbers
    df = df[(df[COLUMNS] != "").any(axis=1)]  # lines of tabs only
    problems: list[str] = []

    def bad(row, msg):
        problems.append(f"{path}, row {row}: {msg}")

    if df.empty:
        raise InputError(f"{path}: the manifest has no rows")
    base = path.resolve().parent
    resolved = []
    for r in df.itertuples(index=False):
        if problem := identifier_problem(r.patient, "patient"):
            bad(r.row, problem)
        if r.timepoint not in TIMEPOINTS:
            bad(r.row, f"timepoint {r.timepoint!r} is not one of {', '.join(TIMEPOINTS)}{_suggest(r.timepoint, TIMEPOINTS)}")
        if r.kind not in KINDS:
            bad(r.row, f"kind {r.kind!r} is not one of {', '.join(KINDS)}{_suggest(r.kind, KINDS)}")
        if problem := identifier_problem(r.name, "name"):
            bad(r.row, problem + " (a modality, mask name or annotator)")
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
        for kind, what in (("image", "modality"), ("landmarks", "annotator")):
            names = {t: grp[(grp.timepoint == t) & (grp.kind == kind)] for t in TIMEPOINTS}
            for r in names["pre"].itertuples():
                twins = names["post"][(names["post"]["name"].str.lower() == r.name.lower()) & (names["post"]["name"] != r.name)]
                for t in twins.itertuples():
                    problems.append(f"{where}: {what} {r.name!r} (pre, row {r.row}) and {t.name!r} (post, row {t.row}) differ "
                                    f"only in case; spell them the same (did you mean {t.name!r}?)")
        post_lm = grp[(grp.timepoint == "post") & (grp.kind == "landmarks")]
        if post_lm.empty:
            problems.append(f"{where}: no post-operative landmark file (a row with timepoint=post, kind=landmarks)")
        elif annotator is not None and annotator not in set(post_lm["name"]):
            problems.append(f"{where}: no post-operative landmarks of the annotator {annotator!r} (config landmarks.annotator)"
                            f"; the patient has {', '.join(post_lm['name'])}{_suggest(annotator, post_lm['name'])}")
        elif annotator is None and len(post_lm) > 1:
            listed = ", ".join(f"{r.name} (row {r.row})" for r in post_lm.itertuples())
            problems.append(f"{where}: post-operative landmarks of {len(post_lm)} annotators, {listed}: set landmarks.annotator "
                            "in the config to the one whose landmarks are redetected (the others' pre-operative files are "
                            "then scored as raters)")
    if problems:
        raise InputError(_join(problems))

    m = Manifest(df.reset_index(drop=True), path, annotator=annotator)
    for patient in m.patients:
        m.warnings += patient_warnings(m, patient)
    return m


def patient_warnings(m: Manifest, patient: str) -> list[str]:
    """What a patient's rows allow but a user should know: unused modalities, no resection mask, no ground truth."""
    out = []
    pre, post = set(m.images(patient, "pre")), set(m.images(patient, "post"))
    only = sorted(pre ^ post)
    if only:
        out.append(f"patient {patient}: modalities {', '.join(only)} exist at one time point only and are not used")
    if m.path(patient, "post", "mask", "resection") is None:
        out.append(f"patient {patient}: no post-operative resection mask: the guided agent is skipped")
    primary = m.primary_annotator(patient)
    if m.annotators(patient, "pre") and primary not in m.annotators(patient, "pre"):
        out.append(
            f"patient {patient}: no pre-operative landmark file has the post-operative annotator's name "
            f"({primary}): there is no ground truth; pre-operative annotations are scored as methods"
        )
    return out


#: a landmark may lie this far (mm) outside the brain mask or the image's foreground (a mask drawn tight)
ANATOMY_TOL_MM = 3.0
UNMATCHED_TRUTH = ("error", "warn")


def validate_contents(m: Manifest, unmatched_truth: str = "error") -> Manifest:
    """Open every file of the manifest and check it; raise listing every problem.

    Checks: images readable, 3D, finite; masks on the grid of an image of the
    same time point, binary, neither empty nor full; landmark files well
    formed, inside the time point's images, on the anatomy (within
    :data:`ANATOMY_TOL_MM` of the brain mask, or of the image's foreground
    without one; with a hint when the points mirrored as LPS would fit it
    better) and, post-operatively, outside the resection mask; landmark
    identifiers of the pre-operative files present in the post-operative file;
    a ground truth (the primary annotator's pre-op file) whose identifiers match
    none of the post-op ones is an error (``unmatched_truth="error"``) or a
    warning (``"warn"``).
    """
    if unmatched_truth not in UNMATCHED_TRUTH:
        raise InputError(f"landmarks.unmatched_truth={unmatched_truth!r}: expected one of {', '.join(UNMATCHED_TRUTH)}")
    problems: list[str] = []
    src = m.source
    for patient in m.patients:
        frames = {}  # (timepoint, annotator) -> (manifest row, landmarks)
        for tp in TIMEPOINTS:
            grids = {}
            anatomy = None  # (what it is, the image, whether it is a mask): the brain mask, or the first image
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
                elif anatomy is None:  # a finite image with contrast: its foreground is the anatomy
                    anatomy = (f"the foreground of the {tp}-operative {r.name} image", img, False)
                grids[r.name] = (img.shape, img.affine)
            masks = {}
            for r in m.rows(patient, tp, "mask").itertuples():
                try:
                    mask = io.read_image(r.path, dtype=None)
                except InputError as err:
                    problems.append(f"{src}, row {r.row}: {err}")
                    continue
                mask_problems = _mask_problems(mask, r.path, grids)
                problems += [f"{src}, row {r.row}: {p}" for p in mask_problems]
                masks[r.name] = mask
                if r.name == "brain" and not mask_problems:
                    anatomy = (f"the {tp}-operative brain mask", mask, True)
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
                if anatomy is not None and grids:
                    problems += [f"{src}, row {r.row}: {r.path}: {p}" for p in _anatomy_problems(lm, *anatomy)]
                if tp == "post":  # identifiers become file names and Snakemake wildcards
                    for lid in lm["landmark"]:
                        if problem := identifier_problem(lid, "landmark identifier"):
                            problems.append(f"{src}, row {r.row}: {r.path}: {problem}")
                frames[(tp, r.name)] = (r, lm)
                lesion = masks.get({"post": "resection", "pre": "tumor"}[tp])
                if lesion is not None and (hint := _mirror_lesion_hint(lm, lesion)):
                    m.warnings.append(f"{src}, row {r.row}: {r.path}: {hint}")
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
        post = frames.get(("post", m.primary_annotator(patient)))
        for (tp, _), (r, lm) in frames.items():
            if tp == "pre" and post is not None and (hint := _mirror_pair_hint(lm, post[1])):
                problems.append(f"{src}, rows {r.row} and {post[0].row}: {r.path} and {post[0].path}: {hint}")
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
            if not post_ids or not unknown:
                continue
            if ids & post_ids:
                m.warnings.append(
                    f"{src}, row {r.row}: pre-operative landmarks {', '.join(unknown)} have no post-operative counterpart and are ignored"
                )
                continue
            msg = (f"{src}, row {r.row}: {r.path}: none of the pre-operative landmark identifiers ({_few(ids)}) is among the "
                   f"post-operative ones ({_few(post_ids)}){_id_hint(ids, post_ids)}")
            if r.name == m.primary_annotator(patient) and unmatched_truth == "error":
                problems.append(msg + "; without matching identifiers there is no ground truth (set landmarks.unmatched_truth: "
                                "warn to run without it)")
            else:
                m.warnings.append(msg + ": they are not scored")
    if problems:
        raise InputError(_join(problems))
    return m


def patient_rows(m: Manifest, patient: str) -> list[dict]:
    """One patient's rows (``row`` and the columns, paths resolved): what its validation job is given, so that
    the job depends on this patient alone."""
    rows = m.rows(patient)[["row"] + COLUMNS]
    return [{k: (int(v) if k == "row" else str(v)) for k, v in r.items()} for r in rows.to_dict("records")]


def validate_patient(rows: list[dict], source, table_out, warnings_out, annotator: str | None = None,
                     unmatched_truth: str = "error", files=None) -> Manifest:
    """Check one patient's files (``rows`` of :func:`patient_rows`); write its manifest slice (paths made
    absolute, so that it reads from anywhere) and its warnings, and log them. ``files``, when given, are
    where the rows' files are for this job, in the rows' order (a workflow job's declared inputs, which a
    Snakemake module's prefix may have moved)."""
    table = pd.DataFrame(rows, columns=["row"] + COLUMNS)
    if files is not None:
        if len(files) != len(table):
            raise ValueError(f"{len(files)} files for {len(table)} manifest rows")
        table["path"] = [str(f) for f in files]
    m = Manifest(table, Path(source), annotator=annotator)
    for patient in m.patients:
        m.warnings += patient_warnings(m, patient)
    validate_contents(m, unmatched_truth)
    for w in m.warnings:
        log.warning(w)
    out = m.table[COLUMNS + ["row"]].copy()
    out["path"] = [os.path.abspath(p) for p in out["path"]]
    io.write_table(out, table_out)
    io.write_table(pd.DataFrame({"warning": m.warnings}, dtype=str), warnings_out)
    return m


def gather_validation(tables, warnings, table_out, warnings_out) -> None:
    """The cohort's validated manifest and warnings from the patients' slices."""
    frames = [pd.read_csv(t, sep="\t", dtype=str, keep_default_na=False) for t in tables]
    io.write_table(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS + ["row"]), table_out)
    notes = [pd.read_csv(w, sep="\t", dtype=str, keep_default_na=False) for w in warnings]
    notes = [n for n in notes if len(n)]
    io.write_table(pd.concat(notes, ignore_index=True) if notes else pd.DataFrame({"warning": []}, dtype=str), warnings_out)


def _anatomy_problems(lm: pd.DataFrame, name: str, image: io.Image, is_mask: bool) -> list[str]:
    """Landmarks more than :data:`ANATOMY_TOL_MM` away from the anatomy (``image`` a brain mask, or an image
    whose foreground is taken), and a hint when the points mirrored to (-x, -y, z), i.e. read as LPS, fit it better."""
    from .preprocess import head_mask  # (preprocess imports this module)

    region = image.data > 0 if is_mask else head_mask(image)
    xyz = io.points_of(lm)

    given, mirrored = np.split(_distance_to(region, image, np.vstack([xyz, xyz * MIRROR])), 2)  # one distance map
    off = given > ANATOMY_TOL_MM
    out = [f"landmark {lid} at RAS ({p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f}) mm lies "
           + (f"{d:.1f} mm outside {name}" if np.isfinite(d) else f"outside the image of {name}")
           + "; expected a point on the anatomy in world RAS mm"
           for lid, p, d in zip(lm["landmark"][off], xyz[off], given[off])]
    if (mirrored <= ANATOMY_TOL_MM).sum() > (~off).sum():
        out.append(f"read as LPS, i.e. mirrored to (-x, -y, z), {(mirrored <= ANATOMY_TOL_MM).sum()} of {len(xyz)} landmarks "
                   f"lie on {name}, against {(~off).sum()} as given: is the file in LPS (ITK, ANTs, 3D Slicer 5)? "
                   "Convert it to RAS (negate x and y)")
    return out


MIRROR = np.array([-1.0, -1.0, 1.0])  # RAS <-> LPS


def _distance_to(region: np.ndarray, image: io.Image, points) -> np.ndarray:
    """Distance (mm) of world points to ``region`` (a boolean array on ``image``'s grid): 0 inside, inf outside
    the image; the distance map is computed only when a point lies outside the region."""
    ijk = np.rint(spatial.world_to_voxel(np.atleast_2d(points), image.affine)).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.array(image.shape)), axis=1)
    out = np.full(len(ijk), np.inf)
    hit = np.zeros(len(ijk), bool)
    hit[inside] = region[tuple(ijk[inside].T)]
    out[hit] = 0.0
    todo = inside & ~hit
    if todo.any():
        dist = ndimage.distance_transform_edt(~region, sampling=image.spacing)
        out[todo] = dist[tuple(ijk[todo].T)]
    return out


def _mirror_pair_hint(pre: pd.DataFrame, post: pd.DataFrame) -> str | None:
    """A hint when pre- and post-op landmarks of the same identifiers are far apart as given and close once
    one file is mirrored (one file in LPS, the other in RAS)."""
    pairs = pre[["landmark", "x", "y", "z"]].merge(post[["landmark", "x", "y", "z"]], on="landmark", suffixes=("_pre", "_post"))
    if pairs.empty:
        return None
    a = pairs[["x_pre", "y_pre", "z_pre"]].to_numpy(float)
    b = pairs[["x_post", "y_post", "z_post"]].to_numpy(float)
    given = float(np.median(np.linalg.norm(a - b, axis=1)))
    mirrored = float(np.median(np.linalg.norm(a - b * MIRROR, axis=1)))
    if given > 20.0 and mirrored < given / 3:
        return (f"the pre- and post-operative landmarks are {given:.0f} mm apart (median) as given, {mirrored:.0f} mm once "
                "one file is mirrored to (-x, -y, z): is one of them in LPS (ITK, ANTs, 3D Slicer 5)? Both must be RAS mm")
    return None


def _mirror_lesion_hint(lm: pd.DataFrame, lesion: io.Image) -> str | None:
    """A hint when the landmarks lie far from the lesion (cavity or tumour) as given and near it once mirrored
    to (-x, -y, z): they are placed around the lesion, so LPS coordinates are the likely cause."""
    region = lesion.data > 0
    if not region.any():
        return None
    xyz = io.points_of(lm)
    given, mirrored = (float(np.median(d)) for d in np.split(_distance_to(region, lesion, np.vstack([xyz, xyz * MIRROR])), 2))
    if given > 30.0 and mirrored < given / 3:
        return (f"the landmarks lie {given:.0f} mm (median) from the lesion mask as given and {mirrored:.0f} mm once mirrored "
                "to (-x, -y, z): is the file in LPS (ITK, ANTs, 3D Slicer 5)? Expected RAS mm")
    return None


def _few(ids, n: int = 5) -> str:
    ids = sorted(ids)
    return ", ".join(ids[:n]) + (f", ... ({len(ids)} in all)" if len(ids) > n else "")


def _id_hint(ids, post_ids) -> str:
    """A did-you-mean for identifiers that differ in leading zeros, case or surrounding text only."""
    def norm(x):
        return x.lower().lstrip("0") or "0"

    post = {norm(p): p for p in post_ids}
    pairs = [(i, post[norm(i)]) for i in sorted(ids) if norm(i) in post]
    if not pairs:
        return ""
    shown = ", ".join(f"{a!r} -> {b!r}" for a, b in pairs[:3])
    return f"; they differ in leading zeros or case only ({shown}): write them the same in both files"


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
