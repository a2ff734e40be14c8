"""Evaluation: per-landmark errors against the pre-op ground truth and per-method summaries.

Definitions (docs/methods.md, "Evaluation"): error = Euclidean distance (mm) between a
method's prediction and the ground-truth pre-op landmark; initial error = the
error of ``identity`` (the post-op landmark after rigid alignment);
normalised error = error / initial error, per landmark; robustness = share of
landmarks whose error is below their initial error; spread = mean distance of
an agent's end points to their centre.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..cohort.manifest import Manifest
from ..cohort.preproc_folder import PreprocFolder
from ..core import layout
from ..core.config import default
from ..core.files import write_table
from ..core.methods import is_compared, sort_key, sort_methods
from ..detect.consensus import flag_statistics
from ..imaging.masks import distance_to
from ..io.landmarks import points_of, read_landmarks
from . import rigidfit

log = logging.getLogger(__name__)

PRED_COLUMNS = ["patient", "landmark", "method", "x", "y", "z", "spread_mm", "fallback", "uncertainty_mm", "flag"]


def collect_predictions(m: Manifest, landmark_files) -> pd.DataFrame:
    """The given ``results/<patient>/landmarks/<method>.csv`` files (and no others) as one tidy table, plus the
    manifest's extra pre-op raters. Columns: patient, landmark, method, x, y, z, spread_mm, fallback and the
    consensus's uncertainty_mm and flag (NaN for the other methods); with ``label`` after ``landmark`` when a
    file gives the users' labels (``identity.csv`` does for labels that are not identifiers), for every method."""
    frames = []
    for csv in landmark_files:
        key = layout.parse(csv)
        if key["kind"] != "landmarks":
            raise ValueError(f"{csv}: not a landmark file of the results layout")
        df = read_landmarks(csv)
        df.insert(0, "method", key["method"])
        df.insert(0, "patient", key["patient"])
        frames.append(df)
    for patient in m.patients:
        primary = m.primary_annotator(patient)
        for ann in m.annotators(patient, "pre"):
            if ann != primary:  # another rater: scored like a method (the paper's "Expert" row)
                df = read_landmarks(m.path(patient, "pre", "landmarks", ann))
                df.insert(0, "method", f"rater_{ann}")
                df.insert(0, "patient", patient)
                frames.append(df)
    if not frames:
        return pd.DataFrame(columns=PRED_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    for col in PRED_COLUMNS[6:]:
        out[col] = pd.to_numeric(out[col], errors="coerce") if col in out.columns else np.nan
    labels = {}
    if "label" in out.columns:  # the users' labels ("Point 1") of identifiers that are not the label itself
        known = out.dropna(subset=["label"])
        labels = dict(zip(zip(known["patient"], known["landmark"]), known["label"]))
    out = out[PRED_COLUMNS]
    if labels:
        out.insert(2, "label", [labels.get(k, "") for k in zip(out["patient"], out["landmark"])])
    order = {p: i for i, p in enumerate(m.patients)}
    return out.sort_values(["patient", "method"], key=lambda c: c.map(order) if c.name == "patient" else c.map(sort_key),
                           kind="stable").reset_index(drop=True)


def ground_truth(m: Manifest) -> pd.DataFrame:
    """The pre-op landmarks of the post-op annotator, where the manifest has them (patient, landmark, x, y, z)."""
    frames = []
    for patient in m.patients:
        primary = m.primary_annotator(patient)
        path = m.path(patient, "pre", "landmarks", primary)
        if path:
            df = read_landmarks(path)[["landmark", "x", "y", "z"]]
            df.insert(0, "patient", patient)
            frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["patient", "landmark", "x", "y", "z"])


def errors(pred: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per patient, landmark and method: error_mm and initial_mm (identity's error)."""
    merged = pred.merge(truth, on=["patient", "landmark"], suffixes=("", "_gt"))
    d = merged[["x", "y", "z"]].to_numpy() - merged[["x_gt", "y_gt", "z_gt"]].to_numpy()
    merged["error_mm"] = np.linalg.norm(d, axis=1)
    init = merged[merged["method"] == "identity"][["patient", "landmark", "error_mm"]].rename(columns={"error_mm": "initial_mm"})
    merged = merged.merge(init, on=["patient", "landmark"], how="left")
    cols = ["patient", "landmark", "method", "error_mm", "initial_mm", "spread_mm", "fallback", "uncertainty_mm", "flag"]
    out = merged[[c for c in cols if c in merged.columns]].copy()
    out["_k"] = out["method"].map(sort_key)
    return out.sort_values(["_k", "patient", "landmark"]).drop(columns="_k").reset_index(drop=True)


#: columns of summary.tsv: error statistics over the landmarks with ground truth (``n`` of them; NaN where
#: a method has none), then what is known without ground truth, over every predicted landmark
ERROR_COLUMNS = ["n", "mean_mm", "median_mm", "std_mm", "norm_mean", "norm_median", "robustness", "over_5mm"]
PREDICTION_COLUMNS = ["landmarks", "median_shift_mm", "median_disagreement_mm", "spread_mm", "fallbacks"]

def _error_rows(err: pd.DataFrame) -> list[dict]:
    rows = []
    for method, g in err.groupby("method", sort=False):
        e = g["error_mm"].to_numpy()
        init = g["initial_mm"].to_numpy()
        ok = np.isfinite(init) & (init > 1e-6)
        norm = e[ok] / init[ok]
        rows.append({
            "method": method,
            "n": len(g),
            "mean_mm": float(np.mean(e)),
            "median_mm": float(np.median(e)),
            "std_mm": float(np.std(e)),
            "norm_mean": float(np.mean(norm)) if norm.size else np.nan,
            "norm_median": float(np.median(norm)) if norm.size else np.nan,
            "robustness": float(np.mean(e[ok] < init[ok])) if ok.any() else np.nan,
            "over_5mm": float(np.mean(e > 5.0)),
        })
    return rows


def _spread_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean agent spread and the number of fallbacks (from errors or predictions)."""
    rows = [{"method": method,
             "spread_mm": float(np.nanmean(g["spread_mm"])) if g["spread_mm"].notna().any() else np.nan,
             "fallbacks": int(np.nansum(g["fallback"])) if g["fallback"].notna().any() else 0}
            for method, g in df.groupby("method", sort=False)]
    return pd.DataFrame(rows, columns=["method", "spread_mm", "fallbacks"])


def prediction_summary(pred: pd.DataFrame) -> pd.DataFrame:
    """Per method, without ground truth: landmarks predicted, median shift from ``identity``, median
    disagreement with the other methods (:func:`disagreement`), mean spread and fallbacks."""
    d = disagreement(pred)
    moved = d.groupby("method", sort=False).agg(landmarks=("landmark", "size"),
                                                median_shift_mm=("shift_from_identity_mm", "median"),
                                                median_disagreement_mm=("disagreement_mm", "median")).reset_index()
    return moved.merge(_spread_rows(pred), on="method", how="left")[["method"] + PREDICTION_COLUMNS]


def summary(err: pd.DataFrame, jacobian: pd.DataFrame | None = None, pred: pd.DataFrame | None = None,
            flag_error_mm: float = default("consensus", "flag_error_mm")) -> pd.DataFrame:
    """Per method: n (landmarks with ground truth), mean, median, normalised mean and median, robustness,
    share above 5 mm, mean spread and fallbacks; with ``pred``, every predicted method has a row (NaN error
    statistics where it has no ground truth) and the columns of :func:`prediction_summary`; with
    ``jacobian``, the share of non-positive Jacobian determinants of each deformation; for a method with a
    flag (``consensus``), how many landmarks it flags and how well the flag catches errors above
    ``flag_error_mm`` (:func:`..detect.consensus.flag_statistics`)."""
    out = pd.DataFrame(_error_rows(err), columns=["method"] + ERROR_COLUMNS)
    if pred is not None:
        out = out.merge(prediction_summary(pred), on="method", how="outer")
        out["n"] = pd.to_numeric(out["n"], errors="coerce").fillna(0).astype(int)
    else:
        out = out.merge(_spread_rows(err), on="method", how="left")
    if jacobian is not None and len(jacobian):
        out = out.merge(jacobian.groupby("method", as_index=False)["nonpositive_jacobian"].mean(), on="method", how="left")
    flags = flag_statistics(err, flag_error_mm)
    if len(flags):
        out = out.merge(flags, on="method", how="left")
    return sort_methods(out) if len(out) else out


#: a method counts as experimental while it improves on the initial error for fewer than this share of landmarks
EXPERIMENTAL_BELOW = 0.9


def experimental(summ: pd.DataFrame, method: str) -> float | None:
    """The robustness of ``method`` in a summary when it is below :data:`EXPERIMENTAL_BELOW` (it improves too few
    landmarks to be trusted), else None (also without ground truth for it)."""
    if summ.empty or method not in set(summ["method"]):
        return None
    row = summ.set_index("method").loc[method]
    if not row["n"] > 0:
        return None
    rob = float(row["robustness"])
    return rob if not rob >= EXPERIMENTAL_BELOW else None


def disagreement(pred: pd.DataFrame) -> pd.DataFrame:
    """``pred`` with two distances that need no ground truth: ``shift_from_identity_mm``, from the rigidly
    aligned post-op position, and ``disagreement_mm``, from the coordinate-wise median of the *other*
    compared methods' predictions of the same landmark (:func:`is_compared`; NaN when there is no other)."""
    pred = pred.reset_index(drop=True)
    xyz = pred[["x", "y", "z"]].to_numpy(dtype=float)
    ident = pred[pred["method"] == "identity"][["patient", "landmark", "x", "y", "z"]]
    merged = pred[["patient", "landmark"]].merge(ident, on=["patient", "landmark"], how="left")
    shift = np.linalg.norm(xyz - merged[["x", "y", "z"]].to_numpy(dtype=float), axis=1)
    compared = pred["method"].map(is_compared).to_numpy(dtype=bool)
    dis = np.full(len(pred), np.nan)
    for _, idx in pred.groupby(["patient", "landmark"], sort=False).indices.items():
        for i in idx:
            others = [j for j in idx if j != i and compared[j]]
            if others:
                dis[i] = float(np.linalg.norm(xyz[i] - np.median(xyz[others], axis=0)))
    out = pred.copy()
    out["shift_from_identity_mm"] = shift
    out["disagreement_mm"] = dis
    return out


def landmarks_to_check(pred: pd.DataFrame, residuals: pd.DataFrame | None = None, flag_mm: float = default("rigid_fit", "flag_mm")) -> pd.DataFrame:
    """Every landmark, the one to look at first on top: how far the compared methods are from each other
    (median and largest ``disagreement_mm``, the method farthest out), the fallbacks, and the methods whose
    prediction is more than ``flag_mm`` off the landmark-based rigid fit (``residuals`` of :func:`rigid_fits`).
    Sorted by the number of warning signs, then by the median disagreement; needs no ground truth."""
    d = disagreement(pred)
    d = d[d["method"].map(is_compared)]
    flagged = {}
    if residuals is not None and len(residuals):
        bad = residuals[(residuals["flagged"] == 1) & residuals["method"].map(is_compared)]
        for (patient, landmark), g in bad.groupby(["patient", "landmark"]):
            flagged[(patient, str(landmark))] = ", ".join(sorted(g["method"], key=sort_key))
    rows = []
    for (patient, landmark), g in d.groupby(["patient", "landmark"], sort=False):
        worst = g.loc[g["disagreement_mm"].idxmax()] if g["disagreement_mm"].notna().any() else None
        fallbacks = ", ".join(sorted(g.loc[g["fallback"] == 1, "method"], key=sort_key))
        off_fit = flagged.get((patient, str(landmark)), "")
        median = float(g["disagreement_mm"].median()) if g["disagreement_mm"].notna().any() else np.nan
        signs = int(bool(fallbacks)) + int(bool(off_fit)) + int(np.isfinite(median) and median > flag_mm)
        rows.append({"patient": patient, "landmark": str(landmark), "methods": len(g),
                     "median_disagreement_mm": median,
                     "max_disagreement_mm": np.nan if worst is None else float(worst["disagreement_mm"]),
                     "farthest_method": "" if worst is None else worst["method"],
                     "fallbacks": fallbacks, "off_rigid_fit": off_fit, "warning_signs": signs})
    cols = ["patient", "landmark", "methods", "median_disagreement_mm", "max_disagreement_mm", "farthest_method",
            "fallbacks", "off_rigid_fit", "warning_signs"]
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["warning_signs", "median_disagreement_mm"], ascending=False, na_position="last").reset_index(drop=True)


def rigid_fits(m: Manifest, pred: pd.DataFrame, truth: pd.DataFrame, preproc_dirs=(),
               flag_mm: float = default("rigid_fit", "flag_mm")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Landmark-based rigid alignment (:mod:`.rigidfit`) per patient and method: post-op landmarks
    (post-op world) to the method's pre-op positions, and to the ground truth as method ``truth``.

    Returns (fits, residuals): per patient and method the number of landmarks, the RMS and largest
    residual, and the rotation angle (deg) and mean landmark displacement (mm) between this fit and
    the preprocessing's image-based rigid registration (``status`` holds the reason when no fit was
    possible: fewer than 3 landmarks, collinear landmarks); per landmark its residual, ``flagged``
    when it exceeds ``flag_mm``, next to the method's spread. ``preproc_dirs``: the preprocessed folders
    (the image-based registration); a patient without one is left out.
    """
    fits, residuals = [], []
    both = pd.concat([pred, truth.assign(method="truth")], ignore_index=True) if len(truth) else pred
    folders = {PreprocFolder(d).patient: PreprocFolder(d) for d in preproc_dirs}
    for patient in m.patients:
        if patient not in folders:
            continue
        reference = folders[patient].post_to_pre
        post = read_landmarks(m.path(patient, "post", "landmarks", m.primary_annotator(patient)))
        for method, g in both[both["patient"] == patient].groupby("method", sort=False):
            pairs = post[["landmark", "x", "y", "z"]].merge(g, on="landmark", suffixes=("_post", ""))
            src, dst = pairs[["x_post", "y_post", "z_post"]].to_numpy(), pairs[["x", "y", "z"]].to_numpy()
            row = {"patient": patient, "method": method, "n": len(pairs)}
            try:
                fit = rigidfit.fit_rigid(src, dst, f"{patient}, {method}")
            except rigidfit.FitError as err:
                log.warning("landmark-based rigid fit: %s", err)
                fits.append({**row, "status": str(err)})
                continue
            angle, moved = rigidfit.compare(fit, reference, src)
            fits.append({**row, "rms_mm": fit.rms_mm, "max_residual_mm": float(fit.residuals.max()),
                         "rotation_vs_image_deg": angle, "shift_vs_image_mm": moved,
                         "flagged": int((fit.residuals > flag_mm).sum()), "status": "ok"})
            spread = pairs["spread_mm"] if "spread_mm" in pairs else pd.Series(np.nan, index=pairs.index)
            for lid, res, sp in zip(pairs["landmark"], fit.residuals, spread):
                residuals.append({"patient": patient, "method": method, "landmark": lid, "residual_mm": res,
                                  "flagged": int(res > flag_mm), "spread_mm": sp})
    fit_cols = ["patient", "method", "n", "rms_mm", "max_residual_mm", "rotation_vs_image_deg", "shift_vs_image_mm", "flagged", "status"]
    res_cols = ["patient", "method", "landmark", "residual_mm", "flagged", "spread_mm"]
    return pd.DataFrame(fits, columns=fit_cols), pd.DataFrame(residuals, columns=res_cols)


#: the bands of distance to the cavity (mm) that the error is broken down by: registration fails near it
CAVITY_BANDS = ((0.0, 6.0, "< 6 mm"), (6.0, 15.0, "6-15 mm"), (15.0, np.inf, ">= 15 mm"))
BAND_COLUMNS = ["method", "band", "n", "mean_mm", "median_mm", "max_mm"]


def cavity_distances(preproc_dirs, lesion_dirs=()) -> pd.DataFrame:
    """Per patient and post-op landmark, its distance (mm) to the post-op resection cavity in the preprocessing
    frame (``cavity_mm``; NaN without a cavity mask), and its band of :data:`CAVITY_BANDS`. ``lesion_dirs``:
    the patients' lesion folders (in the order of ``preproc_dirs``), whose cavity (given or derived) is used;
    without them, the manifest's."""
    rows = []
    lesion_dirs = list(lesion_dirs) or [None] * len(preproc_dirs)
    if len(lesion_dirs) != len(preproc_dirs):
        raise ValueError(f"{len(lesion_dirs)} lesion folders for {len(preproc_dirs)} preprocessed folders")
    for d, les in zip(preproc_dirs, lesion_dirs):
        folder = PreprocFolder(d, lesions=les)
        lm = folder.landmarks("post")
        cavity = folder.lesion_image("post")
        dist = (distance_to(cavity.data > 0, cavity, points_of(lm)) if cavity is not None and (cavity.data > 0).any()
                else np.full(len(lm), np.nan))
        rows += [{"patient": folder.patient, "landmark": str(lid), "cavity_mm": float(x)} for lid, x in zip(lm["landmark"], dist)]
    out = pd.DataFrame(rows, columns=["patient", "landmark", "cavity_mm"])
    out["band"] = [cavity_band(x) for x in out["cavity_mm"]]
    return out


def cavity_band(distance_mm: float) -> str:
    if not np.isfinite(distance_mm):
        return "no cavity mask"
    return next(label for lo, hi, label in CAVITY_BANDS if lo <= distance_mm < hi)


def by_cavity_band(err: pd.DataFrame) -> pd.DataFrame:
    """Per method and band of distance to the cavity (``band`` column of the errors): landmarks, mean, median
    and largest error."""
    if err.empty or "band" not in err.columns:
        return pd.DataFrame(columns=BAND_COLUMNS)
    order = {label: i for i, (_, _, label) in enumerate(CAVITY_BANDS)}
    rows = [{"method": method, "band": band, "n": len(g), "mean_mm": g["error_mm"].mean(),
             "median_mm": g["error_mm"].median(), "max_mm": g["error_mm"].max()}
            for (method, band), g in err.groupby(["method", "band"], sort=False)]
    out = pd.DataFrame(rows, columns=BAND_COLUMNS)
    out = out.assign(_b=out["band"].map(lambda b: order.get(b, len(order)))).sort_values("_b", kind="stable").drop(columns="_b")
    return sort_methods(out)


def evaluate_cohort(m: Manifest, landmark_files, out_errors, out_summary, out_predictions, preproc_dirs=(), jacobian_files=(),
                    out_rigid=None, out_residuals=None, flag_mm: float = default("rigid_fit", "flag_mm"), out_check=None,
                    flag_error_mm: float = default("consensus", "flag_error_mm"), out_bands=None, lesion_dirs=()) -> pd.DataFrame:
    """Write errors.tsv, summary.tsv and predictions.tsv for the cohort from exactly ``landmark_files``
    (``results/<patient>/landmarks/<method>.csv``; the landmark-based rigid fits against ``preproc_dirs``,
    when ``out_rigid`` and ``out_residuals`` are given; the landmarks to check first, when ``out_check`` is
    given; the errors by distance to the cavity, when ``out_bands`` is given); return the summary. Without ground truth
    (no patient has pre-op landmarks of the post-op annotator)
    errors.tsv has its header only, and summary.tsv has every method with ``n`` = 0 and what is known without
    ground truth: shift from identity, disagreement, spread, fallbacks, Jacobian."""
    pred = collect_predictions(m, landmark_files)
    truth = ground_truth(m)
    write_table(disagreement(pred), out_predictions, float_format="%.4f")
    residuals = None
    if out_rigid is not None:
        fits, residuals = rigid_fits(m, pred, truth, preproc_dirs, flag_mm)
        write_table(fits, out_rigid, float_format="%.4f")
        write_table(residuals, out_residuals, float_format="%.4f")
    if out_check is not None:
        write_table(landmarks_to_check(pred, residuals, flag_mm), out_check, float_format="%.4f")
    without = [p for p in m.patients if p not in set(truth["patient"])]
    if truth.empty:
        log.warning("no pre-op ground truth in the manifest: no errors; the summary has the methods' shifts, "
                    "disagreement and spreads only")
    elif without:
        log.warning("no pre-op ground truth for %d of %d patients (%s): errors are over the others",
                    len(without), len(m.patients), ", ".join(without))
    err = errors(pred, truth)
    if len(err) and len(preproc_dirs):
        err = err.merge(cavity_distances(preproc_dirs, lesion_dirs), on=["patient", "landmark"], how="left")
    if out_bands is not None:
        write_table(by_cavity_band(err), out_bands, float_format="%.4f")
    jac = pd.concat([pd.read_csv(f, sep="\t") for f in jacobian_files], ignore_index=True) if jacobian_files else None
    summ = summary(err, jac, pred, flag_error_mm)
    write_table(err, out_errors, float_format="%.4f")
    write_table(summ, out_summary, float_format="%.4f")
    for r in summ.itertuples():
        log.info("%-16s n=%d mean %.2f mm median %.2f mm robustness %.2f, median disagreement %.2f mm",
                 r.method, r.n, r.mean_mm, r.median_mm, r.robustness, r.median_disagreement_mm)
    return summ
