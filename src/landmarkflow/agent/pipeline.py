"""Agents on a preprocessed patient: train one landmark agent, redetect all landmarks of a variant.

Everything happens in the preprocessing frame (the pre-op world, 1 mm RAS
grid): the post-op image and landmarks there are rigidly aligned to the
pre-op scan, and a voxel of that grid maps to original pre-op world
coordinates through the grid's affine, so the CSV written here needs no
back-transform.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import io, spatial
from ..io import InputError
from ..preproc_folder import PreprocFolder
from .detect import landmark_starts, redetect
from .network import DuelingQNet
from .train import AgentConfig, Trainer, augmented_versions, seed_for, setup_device

log = logging.getLogger(__name__)

VARIANTS = ("baseline", "guided")


def train_landmark(preproc_dir, landmark: str, variant: str, cfg: AgentConfig, seed: int, out_model, out_log,
                   device: str = "auto", threads: int | None = None) -> dict:
    """Train the agent of one landmark on the post-op scan; write the model (.pt) and its training log (.tsv).

    An interrupted training resumes from ``<out_model>.resume`` (written every
    200 updates, removed at the end).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    dev = setup_device(device, threads)
    folder = PreprocFolder(preproc_dir)
    patient = folder.patient
    mods = folder.resolve_modalities(cfg.modalities, "agent.modalities")
    post, affine = folder.stack("post", mods)
    target_world, target = folder.target(landmark, affine)
    cavity = folder.lesion("post")
    if variant == "guided" and cavity is None:
        raise InputError(f"{patient}: the guided agent needs a post-op resection mask, and the manifest has none")
    s = seed_for(seed, patient, landmark, variant)
    rng = np.random.default_rng(s)
    versions = augmented_versions(post, folder.mask("post", "brain"), cavity, cfg.versions, rng, cfg.fill_cavity,
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
                       device: str = "auto", threads: int | None = None, detection: dict | None = None) -> pd.DataFrame:
    """Redetect every landmark of a variant in the pre-op scan from the fixed start points.

    Writes ``landmark,x,y,z,spread_mm,fallback`` (pre-op world RAS mm), the end
    point of every start (``out_ends``) and every trajectory (``out_traj``).
    A centre farther than ``max_shift_mm`` from the start box centre (the
    rigidly aligned post-op position) is implausible: the prediction falls
    back to that position and ``fallback`` is 1. ``detection`` (the config's
    :data:`..settings.AGENT_DETECTION_KEYS`) overrides what the models were trained with.
    """
    dev = setup_device(device, threads)
    folder = PreprocFolder(preproc_dir)
    start_lm = folder.landmarks("post")
    tumour = folder.lesion("pre")
    rows, ends, trajs = [], [], []
    for path in models:
        net, state = load_model(path, dev)
        cfg = dataclasses.replace(AgentConfig(**state["config"]), **(detection or {}))
        if state["variant"] != variant:
            raise ValueError(f"{path}: a {state['variant']} agent given to the {variant} redetection")
        pre, affine = folder.stack("pre", state["modalities"], cfg.test_smooth_mm)
        spacing = spatial.spacing_of(affine)
        lid = state["landmark"]
        centre_world, starts = landmark_starts(start_lm, lid, affine, cfg.n_starts, cfg.box_mm, seed)
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
