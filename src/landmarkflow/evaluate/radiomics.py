"""Differential radiomics around landmarks with pyradiomics.

For every landmark, method and modality, a sphere of radius ``r`` mm (several
radii possible) around the post-op landmark in the post-op scan and around the
method's pre-op position in the pre-op scan, restricted to the brain and
optionally excluding the resection cavity (post) and the tumour (pre), goes to
pyradiomics' ``RadiomicsFeatureExtractor`` with a standard pyradiomics
parameter file. Both scans are the preprocessed ones (same 1 mm frame,
N4-corrected, normalised), so pre and post values are comparable:
``delta = post - pre``. A region with fewer than ``min_voxels`` voxels gets NaN
and a warning, not a crash.

Where a method says how uncertain its landmark is (the consensus: ``uncertainty_mm``), the pre-op features are
also measured at :data:`SENSITIVITY_DIRECTIONS` points that far from it (``pre_spread``: the largest change of
the pre-op value among them): a differential change no larger than that cannot be told apart from where the
landmark is (:func:`changes`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..cohort.preproc_folder import PreprocFolder
from ..core.errors import InputError
from ..core.config import default
from ..core.files import write_table
from ..core.logutil import progress
from ..imaging import spatial
from ..imaging.image import Image, to_sitk
from ..io.landmarks import points_of, read_landmarks

log = logging.getLogger(__name__)


def extractor(params_file):
    """A pyradiomics feature extractor from a standard parameter file (YAML/JSON)."""
    import radiomics as _pyradiomics
    from radiomics import featureextractor

    _pyradiomics.setVerbosity(logging.ERROR)  # pyradiomics logs every feature class at INFO
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    params_file = Path(params_file)
    if not params_file.exists():
        raise InputError(f"{params_file}: pyradiomics parameter file not found")
    return featureextractor.RadiomicsFeatureExtractor(str(params_file))


def extract(ext, image: Image, mask: np.ndarray) -> dict:
    """Features of ``image`` inside ``mask`` (bool, same grid) through the project's own I/O path."""
    img = to_sitk(Image(np.asarray(image.data, dtype=np.float32), image.affine))
    msk = to_sitk(Image(mask.astype(np.uint8), image.affine))
    out = ext.execute(img, msk, label=1)
    return {k: float(v) for k, v in out.items() if not k.startswith("diagnostics_")}


def sphere(shape, affine, centre_world, radius_mm: float) -> np.ndarray:
    """Voxels whose centres lie within ``radius_mm`` of a world point."""
    c = spatial.world_to_voxel(centre_world, affine)
    sp = spatial.spacing_of(affine)
    r = np.ceil(radius_mm / sp).astype(int) + 1
    lo = np.maximum(np.floor(c).astype(int) - r, 0)
    hi = np.minimum(np.ceil(c).astype(int) + r + 1, shape)
    mask = np.zeros(shape, bool)
    if np.any(hi <= lo):
        return mask
    idx = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 3)
    d = np.linalg.norm(spatial.voxel_to_world(idx, affine) - np.asarray(centre_world), axis=1)
    sel = idx[d <= radius_mm]
    mask[tuple(sel.T)] = True
    return mask


#: the directions (pre-op world, unit vectors) in which a landmark's uncertainty is probed: the six axis directions
SENSITIVITY_DIRECTIONS = np.vstack([np.eye(3), -np.eye(3)])


def patient_radiomics(preproc_dir, landmark_files: dict, params_file, out_tsv, radii=(5.0,), exclude_lesions=True,
                      min_voxels: int = default("radiomics", "min_voxels"), modalities=(), lesions_dir=None) -> pd.DataFrame:
    """The tidy table of one patient: patient, landmark, method, modality, radius_mm, feature,
    pre, post, delta, rel_change, n_pre, n_post, pre_spread. ``landmark_files`` maps method -> CSV (pre-op world).
    ``pre_spread``: for a method whose file has ``uncertainty_mm`` (the consensus), the largest change of the pre-op
    value when the landmark moves that far along :data:`SENSITIVITY_DIRECTIONS`; NaN otherwise."""
    t0 = time.time()
    folder = PreprocFolder(preproc_dir, lesions=lesions_dir)
    patient = folder.patient
    mods = list(modalities) or folder.modalities
    ext = extractor(params_file)
    brain = {tp: folder.mask(tp, "brain") for tp in ("pre", "post")}
    lesion = {}
    if exclude_lesions:
        for tp in ("pre", "post"):
            if (mask := folder.lesion(tp)) is not None:
                lesion[tp] = mask
    images = {(tp, m): folder.image(tp, m) for tp in ("pre", "post") for m in mods}
    post_lm = folder.landmarks("post")
    post_pts = dict(zip(post_lm["landmark"], points_of(post_lm)))
    ref = images["pre", mods[0]]

    def region(tp, point, radius):
        m = sphere(ref.shape, ref.affine, point, radius) & brain[tp]
        if tp in lesion:
            m &= ~lesion[tp]
        return m

    cache: dict = {}

    def features(tp, mod, point, radius, what):
        key = (tp, mod, tuple(np.round(point, 3)), radius)
        if key not in cache:
            m = region(tp, point, radius)
            n = int(m.sum())
            if n < min_voxels:
                log.warning("%s landmark %s (%s, %s, r=%g mm): %d voxels in the region, fewer than %d: features are NaN",
                            patient, what, tp, mod, radius, n, min_voxels)
                cache[key] = ({}, n)
            else:
                cache[key] = (extract(ext, images[tp, mod], m), n)
        return cache[key]

    rows = []
    tables = {method: read_landmarks(path) for method, path in landmark_files.items()}
    total, done = sum(len(lm) for lm in tables.values()), 0
    for method, lm in tables.items():
        uncertainty = pd.to_numeric(lm["uncertainty_mm"], errors="coerce") if "uncertainty_mm" in lm else None
        for k, (lid, p_pre) in enumerate(zip(lm["landmark"], points_of(lm))):
            done += 1
            log.info("%s: %s landmark %s, %s", patient, method, lid, progress(done, total, time.time() - t0))
            if lid not in post_pts:
                continue
            u = float(uncertainty.iloc[k]) if uncertainty is not None else np.nan
            around = p_pre + u * SENSITIVITY_DIRECTIONS if np.isfinite(u) and u > 0 else []
            for mod in mods:
                for r in radii:
                    f_post, n_post = features("post", mod, post_pts[lid], r, lid)
                    f_pre, n_pre = features("pre", mod, p_pre, r, lid)
                    probes = [features("pre", mod, q, r, lid)[0] for q in around]
                    names = sorted(set(f_post) | set(f_pre))
                    for name in names:
                        pre_v, post_v = f_pre.get(name, np.nan), f_post.get(name, np.nan)
                        moved = [abs(f.get(name, np.nan) - pre_v) for f in probes]
                        spread = float(np.max(moved)) if moved and np.all(np.isfinite(moved)) else np.nan
                        rows.append((patient, lid, method, mod, r, name, pre_v, post_v, n_pre, n_post, spread))
    df = pd.DataFrame(rows, columns=["patient", "landmark", "method", "modality", "radius_mm", "feature", "pre", "post",
                                     "n_pre", "n_post", "pre_spread"])
    df["delta"] = df["post"] - df["pre"]
    with np.errstate(divide="ignore", invalid="ignore"):
        df["rel_change"] = np.where(np.abs(df["pre"]) > 1e-12, df["delta"] / np.abs(df["pre"]), np.nan)
    df = df[["patient", "landmark", "method", "modality", "radius_mm", "feature", "pre", "post", "delta", "rel_change", "n_pre",
             "n_post", "pre_spread"]]
    write_table(df, out_tsv, float_format="%.6g")
    log.info("%s: %d feature values in %.1f s", patient, len(df), time.time() - t0)
    return df


def feature_class(name: str) -> str:
    """``original_glcm_Contrast`` -> ``glcm``; ``log-sigma-1-0-mm-3D_firstorder_Mean`` -> ``firstorder``."""
    parts = name.split("_")
    return parts[-2] if len(parts) >= 3 else "other"


def cohort_radiomics(tables, out_all, out_summary, reference: str = "truth", out_changes=None) -> pd.DataFrame:
    """Concatenate the patients' tables; per method and feature class, how far the method's differential
    feature (delta) is from the one measured at the ground-truth position, in units of the feature's spread;
    with ``out_changes``, the consensus's differential changes there (:func:`changes`, with or without ground truth).

    deviation = |delta_method - delta_truth| / sd(pre values of the feature over the cohort); the summary
    gives its median (and the share above 0.5) per method, feature class, modality and radius.
    """
    frames = [pd.read_csv(t, sep="\t", dtype={"landmark": str}) for t in tables]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    write_table(df, out_all, float_format="%.6g")
    if out_changes is not None:
        write_table(changes(df), out_changes, float_format="%.6g")
    if df.empty or reference not in set(df["method"]):
        summ = pd.DataFrame(columns=["method", "modality", "radius_mm", "feature_class", "features", "median_deviation", "share_over_0.5"])
        write_table(summ, out_summary)
        return summ
    key = ["patient", "landmark", "modality", "radius_mm", "feature"]
    ref = df[df["method"] == reference][key + ["delta"]].rename(columns={"delta": "delta_ref"})
    sd = df.groupby(["modality", "radius_mm", "feature"])["pre"].std().rename("sd").reset_index()
    m = df[df["method"] != reference].merge(ref, on=key).merge(sd, on=["modality", "radius_mm", "feature"])
    m = m[m["sd"] > 0]
    m["deviation"] = (m["delta"] - m["delta_ref"]).abs() / m["sd"]
    m["feature_class"] = m["feature"].map(feature_class)
    summ = (m.groupby(["method", "modality", "radius_mm", "feature_class"])
            .agg(features=("feature", "nunique"), median_deviation=("deviation", "median"),
                 **{"share_over_0.5": ("deviation", lambda x: float(np.mean(x > 0.5)))})
            .reset_index())
    write_table(summ, out_summary, float_format="%.4f")
    return summ


#: the columns of the differential changes (:func:`changes`, ``results/cohort/radiomics_changes.tsv``)
CHANGE_COLUMNS = ["patient", "landmark", "modality", "radius_mm", "feature", "feature_class", "pre", "post", "delta",
                  "z", "pre_spread", "distinguishable"]


def changes(df: pd.DataFrame, method: str = "consensus") -> pd.DataFrame:
    """The differential changes at ``method``'s landmarks (the recommended ones), with and without ground truth: per
    patient, landmark, modality, radius and feature the values, ``z`` = delta / sd of the feature's pre-op values over
    the cohort's landmarks (standardised, comparable across features; NaN with fewer than 2 landmarks or no spread),
    ``pre_spread`` (what moving the landmark by its uncertainty changes, :func:`patient_radiomics`) and
    ``distinguishable``: 1 where |delta| exceeds it, 0 where it does not (the change cannot be told apart from where
    the landmark is), empty where the spread is unknown. Sorted by patient, landmark and |z|, largest first."""
    if df.empty or method not in set(df["method"]):
        return pd.DataFrame(columns=CHANGE_COLUMNS)
    out = df[df["method"] == method].copy()
    if "pre_spread" not in out:
        out["pre_spread"] = np.nan
    sd = out.groupby(["modality", "radius_mm", "feature"])["pre"].transform("std")
    with np.errstate(divide="ignore", invalid="ignore"):
        out["z"] = np.where(sd > 0, out["delta"] / sd, np.nan)
    out["feature_class"] = out["feature"].map(feature_class)
    known = out["pre_spread"].notna() & out["delta"].notna()
    out["distinguishable"] = (out["delta"].abs() > out["pre_spread"]).astype("Int64").where(known, pd.NA)
    out = (out.assign(_size=out["z"].abs().fillna(-1.0))  # a change without a z last
           .sort_values(["patient", "landmark", "_size"], ascending=[True, True, False], kind="stable"))
    return out[CHANGE_COLUMNS].reset_index(drop=True)


def truth_file(preproc_dir):
    """The pre-op ground truth of the primary annotator in the preprocessed folder, if the manifest had it."""
    p = PreprocFolder(preproc_dir).truth_path()
    return None if p is None else str(p)
