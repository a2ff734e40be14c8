"""What every method that searches from start points shares (agents and PIN): the fixed start points, the
robust centre of the end points, a detection and its records in pre-op world RAS mm, the model files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import layout
from ..core.errors import InputError
from ..core.files import write_table
from ..imaging import spatial
from ..io.landmarks import write_landmarks

log = logging.getLogger(__name__)

#: the label of the seeded redetection (method agent_seeded)
SEEDED_VARIANT = "seeded"


def start_points(centre_vox, n: int, box_mm: float, spacing, seed: int) -> np.ndarray:
    """``n`` fixed start points (voxel indices) in a box of edge ``box_mm`` around ``centre_vox``.

    Fixed: they depend on ``seed`` and ``n`` only (the same for every landmark,
    variant and run); the box centre itself is the first one.
    """
    rng = np.random.default_rng(seed)
    half = box_mm / 2 / np.asarray(spacing, dtype=float)
    offsets = rng.uniform(-1, 1, (n, 3)) * half
    offsets[0] = 0
    return np.rint(np.asarray(centre_vox, dtype=float) + offsets).astype(int)


def landmark_starts(start_lm, landmark: str, affine: np.ndarray, n: int, box_mm: float, seed: int):
    """(start box centre in world mm, the fixed start points in voxels of ``affine``) of one landmark: the box
    is centred on the landmark's position in ``start_lm`` (a landmark table, world RAS mm)."""
    row = start_lm[start_lm["landmark"] == landmark]
    centre_world = row[["x", "y", "z"]].to_numpy(dtype=float)[0]
    starts = start_points(spatial.world_to_voxel(centre_world, affine), n, box_mm, spatial.spacing_of(affine), seed)
    return centre_world, starts


#: how the end points of a search become one prediction (config ``agent.centre``)
CENTRES = ("median", "trimmed")


def robust_centre(points: np.ndarray, method: str = "median", spacing=(1.0, 1.0, 1.0), trim_mm: float = 1.5) -> np.ndarray:
    """One point from a search's end points (n, 3, voxels): their coordinate-wise ``median`` (robust to agents that
    went astray), or ``trimmed``: the mean of the end points within ``trim_mm`` of that median (sub-voxel: the
    median of points on a voxel grid is on the grid too, or half-way), the median when none is that close."""
    points = np.asarray(points, dtype=float)
    median = np.median(points, axis=0)
    if method == "median":
        return median
    if method != "trimmed":
        raise ValueError(f"centre {method!r}: expected one of {', '.join(CENTRES)}")
    near = np.linalg.norm((points - median) * np.asarray(spacing, dtype=float), axis=1) <= trim_mm
    return points[near].mean(axis=0) if near.any() else median


@dataclass
class Detection:
    centre: np.ndarray  # voxel coordinates
    ends: np.ndarray  # (n, 3) end points, voxels
    trajectories: np.ndarray  # (steps + 1, n, 3) positions, voxels
    steps: np.ndarray  # (n,) steps taken until the agent stopped
    spread_vox: np.ndarray  # (n,) distances of the end points to the centre (voxels scaled by spacing: mm)


def pool(dets: list[Detection], spacing=(1.0, 1.0, 1.0), method: str = "median") -> Detection:
    """The detections of an ensemble's members from the same starts as one: every member's end points (member
    by member), their robust centre (``method``, :func:`robust_centre`) and the spread about it; trajectories that ended
    early keep their last position."""
    if len(dets) == 1:
        return dets[0]
    ends = np.concatenate([d.ends for d in dets])
    centre = robust_centre(ends, method, spacing)
    t = max(len(d.trajectories) for d in dets)
    trajs = np.concatenate([np.concatenate([d.trajectories, np.repeat(d.trajectories[-1:], t - len(d.trajectories), 0)])
                            for d in dets], axis=1)
    spread = np.linalg.norm((ends - centre) * np.asarray(spacing), axis=1)
    return Detection(centre, ends, trajs, np.concatenate([d.steps for d in dets]), spread)


def model_paths(models, landmarks, variant: str | None = None) -> list[Path]:
    """The model files of ``landmarks``: ``models`` is a trained folder (its ``<landmark>[_<variant>].pt``)
    or the files themselves. A missing one is an error that names it."""
    if isinstance(models, (str, Path)) and Path(models).is_dir():
        paths = [Path(models) / layout.model_name(lm, variant) for lm in landmarks]
    else:
        paths = [Path(p) for p in ([models] if isinstance(models, (str, Path)) else models)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"model file(s) missing: {', '.join(missing)} (was the training interrupted? rerun the workflow)")
    return paths


def detection_records(lid: str, det, starts: np.ndarray, affine: np.ndarray, centre_world: np.ndarray,
                      max_shift_mm: float, seconds: float, label: str, centre_name: str | None = None) -> tuple[dict, list, list]:
    """One landmark's detection (voxels of the preprocessing grid) as table rows in pre-op world RAS mm:
    the prediction (with the fallback to ``centre_world``, ``centre_name``, beyond ``max_shift_mm``), the end points,
    the trajectories."""
    pred = spatial.voxel_to_world(det.centre, affine)
    shift = float(np.linalg.norm(pred - centre_world))
    fallback = shift > max_shift_mm
    if fallback:
        log.warning("landmark %s (%s): prediction %.1f mm from the start centre (more than %g mm); keeping the start "
                    "centre (%s)", lid, label, shift, max_shift_mm, centre_name or (
                        "the registration's landmark" if label == SEEDED_VARIANT else "the rigidly aligned position"))
        pred = centre_world
    row = {"landmark": lid, "x": pred[0], "y": pred[1], "z": pred[2], "spread_mm": float(det.spread_vox.mean()),
           "fallback": int(fallback), "seconds": round(seconds, 3)}
    end_w = spatial.voxel_to_world(det.ends, affine)
    start_w = spatial.voxel_to_world(np.asarray(starts, dtype=float), affine)
    ends = [{"landmark": lid, "start": k, "start_x": start_w[k, 0], "start_y": start_w[k, 1], "start_z": start_w[k, 2],
             "x": end_w[k, 0], "y": end_w[k, 1], "z": end_w[k, 2], "steps": int(det.steps[k])} for k in range(len(starts))]
    tw = spatial.voxel_to_world(det.trajectories.reshape(-1, 3).astype(float), affine).reshape(det.trajectories.shape)
    trajs = [(lid, k, t, *tw[t, k]) for k in range(len(starts)) for t in range(int(det.steps[k]) + 1)]
    log.info("landmark %s (%s): spread %.2f mm, %.2f s", lid, label, det.spread_vox.mean(), seconds)
    return row, ends, trajs


def write_detections(rows, ends, trajs, out_csv, out_ends, out_traj) -> pd.DataFrame:
    """Write the predictions (landmark CSV), the end points and the trajectories; return the predictions."""
    df = pd.DataFrame(rows)
    write_landmarks(df, out_csv)
    write_table(pd.DataFrame(ends), out_ends, float_format="%.3f")
    write_table(pd.DataFrame(trajs, columns=["landmark", "start", "step", "x", "y", "z"]), out_traj, float_format="%.2f")
    return df
