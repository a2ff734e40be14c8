"""The report's figures (matplotlib, drawn off screen): errors per method, error against the initial error,
a landmark's slices with every method's prediction and search (Fig. 5), training curves."""

from __future__ import annotations

import base64
import io as _io
from pathlib import Path

import numpy as np
import pandas as pd

from ..cohort.manifest import LESIONS
from ..cohort.preproc_folder import PreprocFolder
from ..core import methods as catalogue
from ..core.files import atomic_path
from ..imaging import spatial


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: the figures' resolution: small labels stay readable (80 was blurred on a laptop screen)
FIGURE_DPI = 110


def png_uri(fig, path=None) -> str:
    """Encode a figure as a data URI (and save it to ``path`` if given)."""
    pyplot = plt()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    pyplot.close(fig)
    data = buf.getvalue()
    if path is not None:
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(data)
    return "data:image/png;base64," + base64.b64encode(data).decode()


def png_file_uri(path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


# ----------------------------------------------------------------------------- figures
def error_figure(err: pd.DataFrame, column="error_mm", ylabel="error (mm)"):
    pyplot = plt()
    methods = sorted(err["method"].unique(), key=catalogue.sort_key)
    fig, ax = pyplot.subplots(figsize=(1.3 * len(methods) + 2, 4))
    data = [err.loc[err["method"] == m, column].dropna().to_numpy() for m in methods]
    if any(len(d) for d in data):
        ax.boxplot([d if len(d) else [np.nan] for d in data], showfliers=False, widths=0.6)
    rng = np.random.default_rng(0)
    for i, (m, d) in enumerate(zip(methods, data), start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(d)), d, s=14, color=catalogue.colour(m), alpha=0.8, zorder=3)
    ax.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    if column == "norm_error":
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.grid(axis="y", alpha=0.3)
    return fig


def initial_figure(err: pd.DataFrame):
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(5.5, 4.5))
    for m in sorted(err["method"].unique(), key=catalogue.sort_key):
        g = err[err["method"] == m]
        if m == "identity":
            continue
        ax.scatter(g["initial_mm"], g["error_mm"], s=18, color=catalogue.colour(m), label=m, alpha=0.85)
    lim = float(np.nanmax(err[["initial_mm", "error_mm"]].to_numpy())) * 1.05 if len(err) else 1.0
    ax.plot([0, lim], [0, lim], "k--", lw=0.8, label="no improvement")
    ax.set_xlabel("initial error (identity, mm)")
    ax.set_ylabel("error after redetection (mm)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def load_views(folder: PreprocFolder) -> tuple:
    """The reference pre-/post-op images and lesion masks of a preprocessed patient, read once for all its figures."""
    ref = folder.reference_modality
    masks = {f"{tp}_{name}": mask for tp, name in LESIONS.items() if (mask := folder.lesion(tp)) is not None}
    return folder.image("pre", ref), folder.image("post", ref), masks


def landmark_figure(views: tuple, patient: str, landmark: str, pred: pd.DataFrame, truth_xyz, ends: dict, trajs: dict):
    """Fig. 5: pre-op slices at the landmark with truth, predictions, agent end points and trajectories; post-op slice.
    ``views`` is :func:`load_views` of the patient."""
    pyplot = plt()
    pre, post, masks = views
    lm_pred = pred[(pred["patient"] == patient) & (pred["landmark"] == landmark)]
    centre_world = truth_xyz if truth_xyz is not None else lm_pred[lm_pred["method"] == "identity"][["x", "y", "z"]].to_numpy()[0]
    c = np.rint(spatial.world_to_voxel(centre_world, pre.affine)).astype(int)
    half = 22
    fig, axes = pyplot.subplots(1, 4, figsize=(17, 4.6))
    views = [(2, "axial"), (1, "coronal"), (0, "sagittal")]
    for ax, (axis, name) in zip(axes[:3], views):
        _slice(ax, pre, masks.get("pre_tumor"), c, axis, half, f"pre-op, {name}")
        other = [a for a in range(3) if a != axis]
        for method, tr in trajs.items():
            for t in tr:
                v = spatial.world_to_voxel(t, pre.affine)
                ax.plot(v[:, other[0]], v[:, other[1]], color=catalogue.colour(method), lw=0.5, alpha=0.35)
        for method, e in ends.items():
            v = spatial.world_to_voxel(e, pre.affine)
            ax.scatter(v[:, other[0]], v[:, other[1]], s=8, color=catalogue.colour(method), alpha=0.6)
        for r in lm_pred.itertuples():
            v = spatial.world_to_voxel([r.x, r.y, r.z], pre.affine)
            ax.scatter(v[other[0]], v[other[1]], marker="X", s=70, color=catalogue.colour(r.method), edgecolors="white",
                       linewidths=0.6, label=r.method, zorder=4)
        if truth_xyz is not None:
            v = spatial.world_to_voxel(truth_xyz, pre.affine)
            ax.scatter(v[other[0]], v[other[1]], marker="*", s=160, color="lime", edgecolors="black", linewidths=0.6, label="ground truth", zorder=5)
        ax.set_xlim(c[other[0]] - half, c[other[0]] + half)
        ax.set_ylim(c[other[1]] - half, c[other[1]] + half)
        _orientation(ax, pre.affine, other)
    ident = lm_pred[lm_pred["method"] == "identity"][["x", "y", "z"]].to_numpy()
    if len(ident):
        cp = np.rint(spatial.world_to_voxel(ident[0], post.affine)).astype(int)
        _slice(axes[3], post, masks.get("post_resection"), cp, 2, half, "post-op (aligned), axial")
        axes[3].scatter(cp[0], cp[1], marker="P", s=90, color=catalogue.colour("identity"), edgecolors="white", label="post-op landmark")
        axes[3].set_xlim(cp[0] - half, cp[0] + half)
        axes[3].set_ylim(cp[1] - half, cp[1] + half)
        _orientation(axes[3], post.affine, (0, 1))
    handles, labels = axes[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    fig.legend(uniq.values(), uniq.keys(), loc="lower center", ncol=min(len(uniq), 8), fontsize=8)
    fig.suptitle(f"{patient}, landmark {landmark}")
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    return fig


#: the letters of each world axis's negative and positive end (RAS)
ENDS = (("L", "R"), ("P", "A"), ("I", "S"))


def orientation_letters(affine, axes) -> tuple[tuple[str, str], tuple[str, str]]:
    """For a slice shown with voxel axis ``axes[0]`` across (increasing to the right) and ``axes[1]`` up: the
    letters at its (left, right) and (bottom, top) edges, from the world axis each voxel axis runs along most."""
    out = []
    for a in axes:
        column = np.asarray(affine, dtype=float)[:3, a]
        world = int(np.argmax(np.abs(column)))
        low, high = ENDS[world]
        out.append((low, high) if column[world] > 0 else (high, low))
    return out[0], out[1]


def _orientation(ax, affine, axes) -> None:
    """Orientation letters at the edges of a slice (:func:`orientation_letters`)."""
    (left, right), (bottom, top) = orientation_letters(affine, axes)
    style = {"transform": ax.transAxes, "color": "yellow", "fontsize": 9, "fontweight": "bold"}
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)


def _slice(ax, img, mask, c, axis, half, title):
    sl = np.take(img.data, int(np.clip(c[axis], 0, img.shape[axis] - 1)), axis=axis)
    ax.imshow(sl.T, cmap="gray", origin="lower", vmin=0, vmax=float(np.percentile(img.data, 99.5)) or 1.0)
    if mask is not None:
        ms = np.take(mask, int(np.clip(c[axis], 0, mask.shape[axis] - 1)), axis=axis)
        if ms.any():
            ax.contour(ms.T, [0.5], colors="red", linewidths=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def training_figure(logs: dict):
    """Success rate and final distance over updates, one line per agent."""
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 3, figsize=(15, 3.6))
    for name, df in logs.items():
        colour = catalogue.colour("agent_guided" if name.endswith("guided") else
                                  "agent_seeded" if name.endswith("fine") else "agent_baseline")
        for ax, col in zip(axes, ("success_rate", "final_distance_mm", "loss")):
            ax.plot(df["update"], df[col], color=colour, alpha=0.7, lw=1)
    for ax, t in zip(axes, ("success rate (episodes ending within 1 mm)", "distance at episode end (mm)", "loss")):
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("update")
        ax.grid(alpha=0.3)
    axes[0].plot([], [], color=catalogue.colour("agent_baseline"), label="agent_baseline")
    axes[0].plot([], [], color=catalogue.colour("agent_guided"), label="agent_guided")
    axes[0].plot([], [], color=catalogue.colour("agent_seeded"), label="fine agents (agent_seeded, refinement)")
    axes[0].legend(fontsize=8)
    return fig


def pin_training_figure(logs: dict):
    """PIN training: loss, displacement error and direction accuracy over updates, one line per landmark."""
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 3, figsize=(15, 3.6))
    for name, df in logs.items():
        for ax, col in zip(axes, ("loss", "displacement_error_mm", "accuracy")):
            ax.plot(df["update"], df[col], color=catalogue.colour("pin"), alpha=0.7, lw=1)
    for ax, t in zip(axes, ("PIN loss", "PIN displacement error on training points (mm)", "PIN direction accuracy")):
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("update")
        ax.grid(alpha=0.3)
    return fig


def changes_figure(share: pd.DataFrame, size: pd.DataFrame):
    """The differential radiomics at a glance: landmarks (rows) against feature classes (columns), the colour the
    median |z| of the class's changes, the number the share of them larger than the landmark's uncertainty allows
    to tell apart ("-" where that is unknown). ``share`` and ``size``: DataFrames indexed by landmark, one column
    per feature class."""
    pyplot = plt()
    rows, cols = list(size.index), list(size.columns)
    fig, ax = pyplot.subplots(figsize=(1.1 * len(cols) + 3, 0.45 * len(rows) + 1.6))
    shown = ax.imshow(size.to_numpy(dtype=float), cmap="viridis", aspect="auto", vmin=0)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            v = share.loc[r, c] if r in share.index and c in share.columns else np.nan
            ax.text(j, i, "-" if not np.isfinite(v) else f"{100 * v:.0f}%", ha="center", va="center", fontsize=8,
                    color="white")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    fig.colorbar(shown, ax=ax, label="median |z| of the changes")
    ax.set_title("differential radiomics at the recommended landmarks (% larger than the landmark's uncertainty)",
                 fontsize=9)
    return fig
