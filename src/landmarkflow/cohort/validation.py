"""The checks of the files a manifest names (images, masks, landmark files), and the validation job.

:func:`validate_contents` opens every file and collects every problem, each with its manifest row and
file, into one :class:`~landmarkflow.core.errors.InputError`; :func:`validate_patient` is the workflow's
job for one patient (it writes the patient's manifest slice), :func:`gather_validation` the cohort's.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..core.errors import InputError
from ..core.files import write_table
from ..imaging import spatial
from ..imaging.image import Image, read_image
from ..imaging.masks import distance_to, head_mask, inside_mask
from ..io.landmarks import points_of, read_landmarks
from .manifest import COLUMNS, LESIONS, TIMEPOINTS, Manifest, identifier_problem, patient_warnings, problem_list

log = logging.getLogger(__name__)

#: a landmark may lie this far (mm) outside the brain mask or the image's foreground (a mask drawn tight)
ANATOMY_TOL_MM = 3.0
UNMATCHED_TRUTH = ("error", "warn")


@dataclass
class _Findings:
    """What the checks of one manifest found: problems (errors) and warnings, each with its row and file."""

    source: object
    problems: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    def problem(self, row, msg: str) -> None:
        self.problems.append(f"{self.source}, row {row}: {msg}")

    def warning(self, row, msg: str) -> None:
        self.warnings.append(f"{self.source}, row {row}: {msg}")


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
    found = _Findings(m.source)
    for patient in m.patients:
        frames = {}  # (timepoint, annotator) -> (manifest row, landmarks)
        for tp in TIMEPOINTS:
            grids, anatomy = _check_images(m, patient, tp, found)
            masks, brain = _check_masks(m, patient, tp, grids, found)
            frames.update(_check_landmarks(m, patient, tp, grids, brain or anatomy, masks, found))
        _check_pairs(m, patient, frames, found)
        _check_identifiers(m, patient, unmatched_truth, found)
    m.warnings += found.warnings
    if found.problems:
        raise InputError(problem_list(found.problems))
    return m


def _check_images(m: Manifest, patient: str, tp: str, found: _Findings):
    """Every image of a time point: readable, finite, not constant. Returns their grids by modality and the
    anatomy of the time point (what it is, the first finite image with contrast, not a mask)."""
    grids, anatomy = {}, None
    for r in m.rows(patient, tp, "image").itertuples():
        try:
            img = read_image(r.path)
        except InputError as err:
            found.problem(r.row, str(err))
            continue
        if img.note:
            found.warning(r.row, img.note)
        n_bad = int(np.count_nonzero(~np.isfinite(img.data)))
        if n_bad:
            found.problem(r.row, f"{r.path} has {n_bad} NaN or infinite voxels")
        elif float(img.data.max()) == float(img.data.min()):
            found.problem(r.row, f"{r.path} is constant ({float(img.data.min())}): an empty image?")
        elif anatomy is None:  # a finite image with contrast: its foreground is the anatomy
            anatomy = (f"the foreground of the {tp}-operative {r.name} image", img, False)
        grids[r.name] = (img.shape, img.affine)
    return grids, anatomy


def _check_masks(m: Manifest, patient: str, tp: str, grids: dict, found: _Findings):
    """Every mask of a time point (:func:`_mask_problems`). Returns the masks by name and, when the brain mask
    is sound, the anatomy it defines."""
    masks, brain = {}, None
    for r in m.rows(patient, tp, "mask").itertuples():
        try:
            mask = read_image(r.path, dtype=None)
        except InputError as err:
            found.problem(r.row, str(err))
            continue
        if mask.note:
            found.warning(r.row, mask.note)
        mask_problems = _mask_problems(mask, r.path, grids)
        for p in mask_problems:
            found.problem(r.row, p)
        masks[r.name] = mask
        if r.name == "brain" and not mask_problems:
            brain = (f"the {tp}-operative brain mask", mask, True)
    return masks, brain


def _check_landmarks(m: Manifest, patient: str, tp: str, grids: dict, anatomy, masks: dict, found: _Findings) -> dict:
    """Every landmark file of a time point: readable, inside the images, on the anatomy, identifiers usable as
    file names (post-op), outside the lesion (an error post-op, a warning pre-op). Returns {(tp, annotator):
    (row, landmarks)}."""
    frames = {}
    lesion_name = LESIONS[tp]
    for r in m.rows(patient, tp, "landmarks").itertuples():
        try:
            lm = read_landmarks(r.path)
        except InputError as err:
            found.problem(r.row, str(err))
            continue
        xyz = points_of(lm)
        for modality, (shape, affine) in grids.items():
            inside = spatial.inside_image(xyz, affine, shape)
            for lid, pt in zip(lm["landmark"][~inside], xyz[~inside]):
                found.problem(r.row, f"{r.path}: landmark {lid} at RAS ({pt[0]:.1f}, {pt[1]:.1f}, {pt[2]:.1f}) mm lies outside "
                                     f"the {tp}-operative {modality} image; expected world RAS mm (not voxel indices or LPS)")
        if anatomy is not None and grids:
            for p in _anatomy_problems(lm, *anatomy):
                found.problem(r.row, f"{r.path}: {p}")
        if tp == "post":  # identifiers become file names and Snakemake wildcards
            for lid in lm["landmark"]:
                if problem := identifier_problem(lid, "landmark identifier"):
                    found.problem(r.row, f"{r.path}: {problem}")
        frames[(tp, r.name)] = (r, lm)
        lesion = masks.get(lesion_name)
        if lesion is not None and (hint := _mirror_lesion_hint(lm, lesion)):
            found.warning(r.row, f"{r.path}: {hint}")
        # post-op landmarks inside the cavity cannot be redetected; pre-op ones in the tumour are suspect
        if lesion is not None:
            for lid in lm["landmark"][inside_mask(lesion, xyz)]:
                msg = f"{r.path}: landmark {lid} lies inside the {lesion_name} mask"
                if tp == "post":
                    found.problem(r.row, msg + "; a landmark must be on tissue that exists at both time points")
                else:
                    found.warning(r.row, msg)
    return frames


def _check_pairs(m: Manifest, patient: str, frames: dict, found: _Findings) -> None:
    """Pre-op files far from the post-op landmarks as given and close once mirrored (one file in LPS)."""
    post = frames.get(("post", m.primary_annotator(patient)))
    if post is None:
        return
    for (tp, _), (r, lm) in frames.items():
        if tp == "pre" and (hint := _mirror_pair_hint(lm, post[1])):
            found.problems.append(f"{found.source}, rows {r.row} and {post[0].row}: {r.path} and {post[0].path}: {hint}")


def _check_identifiers(m: Manifest, patient: str, unmatched_truth: str, found: _Findings) -> None:
    """Pre-op landmark identifiers against the post-op ones: some unknown (a warning), none known (an error
    for the ground truth unless ``unmatched_truth`` is ``warn``)."""
    post_ids: set[str] = set()
    for r in m.rows(patient, "post", "landmarks").itertuples():
        try:
            post_ids |= set(read_landmarks(r.path)["landmark"])
        except InputError:
            pass
    for r in m.rows(patient, "pre", "landmarks").itertuples():
        try:
            ids = set(read_landmarks(r.path)["landmark"])
        except InputError:
            continue
        unknown = sorted(ids - post_ids)
        if not post_ids or not unknown:
            continue
        if ids & post_ids:
            found.warning(r.row, f"pre-operative landmarks {', '.join(unknown)} have no post-operative counterpart and are ignored")
            continue
        msg = (f"{r.path}: none of the pre-operative landmark identifiers ({_few(ids)}) is among the "
               f"post-operative ones ({_few(post_ids)}){_id_hint(ids, post_ids)}")
        if r.name == m.primary_annotator(patient) and unmatched_truth == "error":
            found.problem(r.row, msg + "; without matching identifiers there is no ground truth (set landmarks.unmatched_truth: "
                                       "warn to run without it)")
        else:
            found.warning(r.row, msg + ": they are not scored")


def validate_patient(rows: list[dict], source, table_out, warnings_out, annotator: str | None = None,
                     unmatched_truth: str = "error", files=None) -> Manifest:
    """Check one patient's files (``rows`` of :func:`.manifest.patient_rows`); write its manifest slice (paths made
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
    write_table(out, table_out)
    write_table(pd.DataFrame({"warning": m.warnings}, dtype=str), warnings_out)
    return m


def gather_validation(tables, warnings, table_out, warnings_out) -> None:
    """The cohort's validated manifest and warnings from the patients' slices."""
    frames = [pd.read_csv(t, sep="\t", dtype=str, keep_default_na=False) for t in tables]
    write_table(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS + ["row"]), table_out)
    notes = [pd.read_csv(w, sep="\t", dtype=str, keep_default_na=False) for w in warnings]
    notes = [n for n in notes if len(n)]
    write_table(pd.concat(notes, ignore_index=True) if notes else pd.DataFrame({"warning": []}, dtype=str), warnings_out)


def _anatomy_problems(lm: pd.DataFrame, name: str, image: Image, is_mask: bool) -> list[str]:
    """Landmarks more than :data:`ANATOMY_TOL_MM` away from the anatomy (``image`` a brain mask, or an image
    whose foreground is taken), and a hint when the points mirrored to (-x, -y, z), i.e. read as LPS, fit it better."""
    region = image.data > 0 if is_mask else head_mask(image)
    xyz = points_of(lm)

    given, mirrored = np.split(distance_to(region, image, np.vstack([xyz, spatial.ras_to_lps(xyz)])), 2)  # one distance map
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


def _mirror_pair_hint(pre: pd.DataFrame, post: pd.DataFrame) -> str | None:
    """A hint when pre- and post-op landmarks of the same identifiers are far apart as given and close once
    one file is mirrored (one file in LPS, the other in RAS)."""
    pairs = pre[["landmark", "x", "y", "z"]].merge(post[["landmark", "x", "y", "z"]], on="landmark", suffixes=("_pre", "_post"))
    if pairs.empty:
        return None
    a = pairs[["x_pre", "y_pre", "z_pre"]].to_numpy(float)
    b = pairs[["x_post", "y_post", "z_post"]].to_numpy(float)
    given = float(np.median(np.linalg.norm(a - b, axis=1)))
    mirrored = float(np.median(np.linalg.norm(a - spatial.ras_to_lps(b), axis=1)))
    if given > 20.0 and mirrored < given / 3:
        return (f"the pre- and post-operative landmarks are {given:.0f} mm apart (median) as given, {mirrored:.0f} mm once "
                "one file is mirrored to (-x, -y, z): is one of them in LPS (ITK, ANTs, 3D Slicer 5)? Both must be RAS mm")
    return None


def _mirror_lesion_hint(lm: pd.DataFrame, lesion: Image) -> str | None:
    """A hint when the landmarks lie far from the lesion (cavity or tumour) as given and near it once mirrored
    to (-x, -y, z): they are placed around the lesion, so LPS coordinates are the likely cause."""
    region = lesion.data > 0
    if not region.any():
        return None
    xyz = points_of(lm)
    given, mirrored = (float(np.median(d)) for d in np.split(distance_to(region, lesion, np.vstack([xyz, spatial.ras_to_lps(xyz)])), 2))
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


def _mask_problems(mask: Image, path, grids) -> list[str]:
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
