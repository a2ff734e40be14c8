"""Agents on a preprocessed patient: train one landmark agent, redetect all landmarks of a variant.

Everything happens in the preprocessing frame (the pre-op world, 1 mm RAS
grid): the post-op image and landmarks there are rigidly aligned to the
pre-op scan, and a voxel of that grid maps to original pre-op world
coordinates through the grid's affine, so the CSV written here needs no
back-transform.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from .. import io, spatial
from ..io import InputError
from .detect import redetect, start_points
from .network import DuelingQNet
from .train import AgentConfig, Trainer, augmented_versions, pick_device, seed_for

log = logging.getLogger(__name__)

VARIANTS = ("baseline", "guided")


def _info(preproc_dir) -> dict:
    p = Path(preproc_dir) / "preproc.json"
    if not p.exists():
        raise InputError(f"{p}: not found; run the preprocessing first")
    return json.loads(p.read_text())


def _modalities(info: dict, cfg, key: str = "agent") -> list[str]:
    mods = list(cfg.modalities) or [info["reference_modality"]]
    unknown = [m for m in mods if m not in info["modalities"]]
    if unknown:
        raise InputError(f"{key}.modalities {unknown} not among the patient's modalities {info['modalities']}")
    return mods


def _stack(preproc_dir, timepoint: str, mods) -> tuple[np.ndarray, np.ndarray]:
    imgs = [io.read_image(Path(preproc_dir) / f"{timepoint}_{m}.nii.gz") for m in mods]
    return np.stack([i.data for i in imgs]), imgs[0].affine


def _mask(preproc_dir, name) -> np.ndarray | None:
    p = Path(preproc_dir) / f"{name}.nii.gz"
    return io.read_image(p, dtype=None).data > 0 if p.exists() else None


def _setup(device: str, threads: int | None) -> torch.device:
    """Torch threads and device of a job; logs what the job sees (a SLURM GPU job sets CUDA_VISIBLE_DEVICES)."""
    if threads:
        torch.set_num_threads(int(threads))
    dev = pick_device(device)
    log.info("device %s (requested %s, CUDA_VISIBLE_DEVICES=%s, cuda available: %s), %d torch threads", dev, device,
             os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), torch.cuda.is_available(), torch.get_num_threads())
    return dev


def _post_landmarks(preproc_dir, info: dict) -> pd.DataFrame:
    """The primary annotator's post-op landmarks, rigidly aligned into the preprocessing frame (pre-op world)."""
    return io.read_landmarks(Path(preproc_dir) / f"landmarks_post_{info['primary_annotator']}.csv")


def _target(preproc_dir, info: dict, landmark: str, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One post-op landmark: (world RAS mm, voxel position on the grid of ``affine``)."""
    lm = _post_landmarks(preproc_dir, info)
    row = lm[lm["landmark"] == str(landmark)]
    if row.empty:
        raise InputError(f"landmark {landmark!r} is not in the post-op landmarks of {info['patient']} ({', '.join(lm['landmark'])})")
    world = io.points_of(row)[0]
    return world, spatial.world_to_voxel(world, affine)


def _pre_volume(cache: dict, preproc_dir, mods, smooth_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The pre-op channels of ``mods`` and their affine, read once per set of modalities (``cache``),
    smoothed with a Gaussian of ``smooth_mm`` (sigma in mm) when it is positive."""
    key = (tuple(mods), float(smooth_mm))
    if key not in cache:
        vol, affine = _stack(preproc_dir, "pre", mods)
        if smooth_mm > 0:
            sigma = float(smooth_mm) / np.asarray(spatial.spacing_of(affine), dtype=float)
            vol = ndimage.gaussian_filter(vol.astype(np.float32), (0, *sigma))  # each channel on its own
        cache[key] = (vol, affine)
    return cache[key]


def _starts(start_lm: pd.DataFrame, landmark: str, affine: np.ndarray, n: int, box_mm: float, seed: int):
    """(start centre in world mm, the fixed start points in voxels) of one landmark in the pre-op scan."""
    centre_world = io.points_of(start_lm[start_lm["landmark"] == landmark])[0]
    starts = start_points(spatial.world_to_voxel(centre_world, affine), n, box_mm, spatial.spacing_of(affine), seed)
    return centre_world, starts


def train_landmark(preproc_dir, landmark: str, variant: str, cfg: AgentConfig, seed: int, out_model, out_log,
                   device: str = "auto", threads: int | None = None) -> dict:
    """Train the agent of one landmark on the post-op scan; write the model (.pt) and its training log (.tsv).

    An interrupted training resumes from ``<out_model>.resume`` (written every
    200 updates, removed at the end).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    dev = _setup(device, threads)
    info = _info(preproc_dir)
    patient = info["patient"]
    mods = _modalities(info, cfg)
    post, affine = _stack(preproc_dir, "post", mods)
    target_world, target = _target(preproc_dir, info, landmark, affine)
    cavity = _mask(preproc_dir, "post_resection")
    if variant == "guided" and cavity is None:
        raise InputError(f"{patient}: the guided agent needs a post-op resection mask, and the manifest has none")
    s = seed_for(seed, patient, landmark, variant)
    rng = np.random.default_rng(s)
    versions = augmented_versions(post, _mask(preproc_dir, "post_brain"), cavity, cfg.versions, rng, cfg.fill_cavity,
                                  target, cfg.warp_deg, cfg.warp_scale, cfg.warp_mm, spatial.spacing_of(affine))
    t0 = time.time()
    trainer = Trainer(versions, target, cfg, s, dev, mask=cavity if variant == "guided" else None,
                      spacing=spatial.spacing_of(affine))
    resume = Path(str(out_model) + ".resume")
    if resume.exists():
        log.info("resuming from %s", resume)
        trainer.load_checkpoint(resume)
    rows = trainer.train(checkpoint=resume)
    seconds = time.time() - t0
    state = {
        "state_dict": trainer.net.state_dict(),
        "config": cfg.to_dict(),
        "patient": patient,
        "landmark": str(landmark),
        "variant": variant,
        "modalities": mods,
        "seed": s,
        "target_world": target_world.tolist(),
        "in_channels": cfg.history * len(mods),
        "train_seconds": seconds,
        "device": str(dev),
        "torch": torch.__version__,
        "replay_mb": trainer.replay.nbytes() / 2**20,
    }
    with io.atomic_path(out_model, suffix=".pt") as tmp:
        torch.save(state, tmp)
    io.write_table(pd.DataFrame(rows), out_log)
    if resume.exists():
        os.unlink(resume)
    log.info("%s landmark %s (%s): %d updates in %.1f s on %s", patient, landmark, variant, cfg.updates, seconds, dev)
    return state


def load_model(path, device="cpu") -> tuple[DuelingQNet, dict]:
    state = torch.load(path, map_location=device, weights_only=False)
    cfg = AgentConfig(**state["config"])
    net = DuelingQNet(state["in_channels"], cfg.patch, cfg.width)
    net.load_state_dict(state["state_dict"])
    return net, state


def redetect_landmarks(preproc_dir, models, variant: str, seed: int, out_csv, out_ends, out_traj,
                       device: str = "auto", threads: int | None = None) -> pd.DataFrame:
    """Redetect every landmark of a variant in the pre-op scan from the fixed start points.

    Writes ``landmark,x,y,z,spread_mm,fallback`` (pre-op world RAS mm), the end
    point of every start (``out_ends``) and every trajectory (``out_traj``).
    A centre farther than ``max_shift_mm`` from the start box centre (the
    rigidly aligned post-op position) is implausible: the prediction falls
    back to that position and ``fallback`` is 1.
    """
    dev = _setup(device, threads)
    info = _info(preproc_dir)
    start_lm = _post_landmarks(preproc_dir, info)
    tumour = _mask(preproc_dir, "pre_tumor")
    rows, ends, trajs = [], [], []
    volumes: dict = {}
    for path in models:
        net, state = load_model(path, dev)
        cfg = AgentConfig(**state["config"])
        if state["variant"] != variant:
            raise ValueError(f"{path}: a {state['variant']} agent given to the {variant} redetection")
        pre, affine = _pre_volume(volumes, preproc_dir, state["modalities"], cfg.test_smooth_mm)
        spacing = spatial.spacing_of(affine)
        lid = state["landmark"]
        centre_world, starts = _starts(start_lm, lid, affine, cfg.n_starts, cfg.box_mm, seed)
        forbidden = tumour if (variant == "guided" and cfg.guide_test) else None
        t0 = time.time()
        det = redetect(net, pre, starts, cfg.patch, cfg.history, cfg.scales, cfg.max_test_steps, forbidden, spacing, dev)
        seconds = time.time() - t0
        rec = detection_records(lid, det, starts, affine, centre_world, cfg.max_shift_mm, seconds, variant)
        rows.append(rec[0])
        ends += rec[1]
        trajs += rec[2]
    return write_detections(rows, ends, trajs, out_csv, out_ends, out_traj)


def detection_records(lid: str, det, starts: np.ndarray, affine: np.ndarray, centre_world: np.ndarray,
                      max_shift_mm: float, seconds: float, label: str) -> tuple[dict, list, list]:
    """One landmark's detection (voxels of the preprocessing grid) as table rows in pre-op world RAS mm:
    the prediction (with the fallback to ``centre_world`` beyond ``max_shift_mm``), the end points, the trajectories."""
    pred = spatial.voxel_to_world(det.centre, affine)
    shift = float(np.linalg.norm(pred - centre_world))
    fallback = shift > max_shift_mm
    if fallback:
        log.warning("landmark %s (%s): prediction %.1f mm from the start centre; keeping the rigidly aligned position",
                    lid, label, shift)
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
    io.write_landmarks(df, out_csv)
    io.write_table(pd.DataFrame(ends), out_ends, float_format="%.3f")
    io.write_table(pd.DataFrame(trajs, columns=["landmark", "start", "step", "x", "y", "z"]), out_traj, float_format="%.2f")
    return df
