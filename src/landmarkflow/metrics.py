"""Evaluation: per-landmark errors against the pre-op ground truth and per-method summaries.

Definitions (DESIGN.md, "Metrics"): error = Euclidean distance (mm) between a
method's prediction and the ground-truth pre-op landmark; initial error = the
error of ``identity`` (the post-op landmark after rigid alignment);
normalised error = error / initial error, per landmark; robustness = share of
landmarks whose error is below their initial error; spread = mean distance of
an agent's end points to their centre.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from . import io
from .manifest import Manifest

log = logging.getLogger(__name__)

#: order of methods in tables and figures (others follow alphabetically)
METHOD_ORDER = ["identity", "ants_rigid", "ants_affine", "ants_syn_nomask", "ants_syn", "agent_baseline", "agent_guided", "pin"]


def method_sort_key(name: str):
    return (METHOD_ORDER.index(name) if name in METHOD_ORDER else len(METHOD_ORDER), name)


def collect_predictions(m: Manifest, results_dir="results") -> pd.DataFrame:
    """Every ``results/<patient>/landmarks/<method>.csv`` as one tidy table, plus the extra pre-op raters.

    Columns: patient, landmark, method, x, y, z, spread_mm, fallback.
    """
    frames = []
    for patient in m.patients:
        folder = Path(results_dir) / patient / "landmarks"
        for csv in sorted(folder.glob("*.csv")):
            df = io.read_landmarks(csv)
            df.insert(0, "method", csv.stem)
            df.insert(0, "patient", patient)
            frames.append(df)
        primary = m.annotators(patient, "post")[0]
        for ann in m.annotators(patient, "pre"):
            if ann != primary:  # another rater: scored like a method (the paper's "Expert" row)
                df = io.read_landmarks(m.path(patient, "pre", "landmarks", ann))
                df.insert(0, "method", f"rater_{ann}")
                df.insert(0, "patient", patient)
                frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["patient", "landmark", "method", "x", "y", "z", "spread_mm", "fallback"])
    out = pd.concat(frames, ignore_index=True)
    for col in ("spread_mm", "fallback"):
        out[col] = pd.to_numeric(out[col], errors="coerce") if col in out.columns else np.nan
    return out[["patient", "landmark", "method", "x", "y", "z", "spread_mm", "fallback"]]


def ground_truth(m: Manifest) -> pd.DataFrame:
    """The pre-op landmarks of the post-op annotator, where the manifest has them (patient, landmark, x, y, z)."""
    frames = []
    for patient in m.patients:
        primary = m.annotators(patient, "post")[0]
        path = m.path(patient, "pre", "landmarks", primary)
        if path:
            df = io.read_landmarks(path)[["landmark", "x", "y", "z"]]
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
    cols = ["patient", "landmark", "method", "error_mm", "initial_mm", "spread_mm", "fallback"]
    out = merged[cols].copy()
    out["_k"] = out["method"].map(method_sort_key)
    return out.sort_values(["_k", "patient", "landmark"]).drop(columns="_k").reset_index(drop=True)


def summary(err: pd.DataFrame, jacobian: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per method: n, mean, median, normalised mean and median, robustness, share above 5 mm, mean spread."""
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
            "spread_mm": float(np.nanmean(g["spread_mm"])) if g["spread_mm"].notna().any() else np.nan,
            "fallbacks": int(np.nansum(g["fallback"])) if g["fallback"].notna().any() else 0,
        })
    out = pd.DataFrame(rows)
    if jacobian is not None and len(jacobian):
        out = out.merge(jacobian.groupby("method", as_index=False)["nonpositive_jacobian"].mean(), on="method", how="left")
    if len(out):
        out = out.iloc[sorted(range(len(out)), key=lambda i: method_sort_key(out["method"].iloc[i]))].reset_index(drop=True)
    return out


def disagreement(pred: pd.DataFrame) -> pd.DataFrame:
    """Distance of every prediction to the identity position (available without ground truth)."""
    ident = pred[pred["method"] == "identity"][["patient", "landmark", "x", "y", "z"]]
    merged = pred.merge(ident, on=["patient", "landmark"], suffixes=("", "_id"), how="left")
    d = merged[["x", "y", "z"]].to_numpy() - merged[["x_id", "y_id", "z_id"]].to_numpy()
    pred = pred.copy()
    pred["shift_from_identity_mm"] = np.linalg.norm(d, axis=1)
    return pred


def evaluate_cohort(m: Manifest, out_errors, out_summary, out_predictions, results_dir="results", jacobian_files=()) -> pd.DataFrame:
    """Write errors.tsv, summary.tsv and predictions.tsv for the cohort; return the summary."""
    pred = collect_predictions(m, results_dir)
    truth = ground_truth(m)
    io.write_table(disagreement(pred), out_predictions, float_format="%.4f")
    if truth.empty:
        log.warning("no pre-op ground truth in the manifest: errors and summary are empty")
    err = errors(pred, truth)
    jac = pd.concat([pd.read_csv(f, sep="\t") for f in jacobian_files], ignore_index=True) if jacobian_files else None
    summ = summary(err, jac)
    io.write_table(err, out_errors, float_format="%.4f")
    io.write_table(summ, out_summary, float_format="%.4f")
    for r in summ.itertuples():
        log.info("%-16s n=%d mean %.2f mm median %.2f mm robustness %.2f", r.method, r.n, r.mean_mm, r.median_mm, r.robustness)
    return summ
