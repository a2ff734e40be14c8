"""Agents on a preprocessed patient: train all its agents in one batched job, redetect all landmarks of a variant.

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

from ...cohort.preproc_folder import PreprocFolder
from ...core import layout, methods
from ...core.errors import InputError
from ...core.files import atomic_dir, write_table
from ...imaging import spatial
from ...io.landmarks import read_landmarks
from ..augment import augmented_versions
from ..device import seed_for, setup_device
from ..search import SEEDED, detection_records, landmark_starts, model_paths, pool, write_detections
from .detect import redetect
from .network import DuelingQNet
from .train import AgentConfig, AgentSpec, Trainer

log = logging.getLogger(__name__)


def train_agents(preproc_dir, cfg: AgentConfig, seed: int, out_dir, device: str = "auto", threads: int | None = None,
                 checkpoint_every: int = 200) -> list[dict]:
    """Train every agent of a patient in one batched loop: each post-op landmark x variant (both when the
    patient has a resection mask, else the baseline), on the post-op scan. Writes ``out_dir`` whole or not at
    all: per agent its model (``<landmark>_<variant>.pt``) and training log (``<landmark>_<variant>_training.tsv``).

    The patient's volumes and augmented copies are made once and shared by the agents (with a warp in the
    config, each landmark gets its own copies warped about it). An interrupted training resumes from
    ``<out_dir>.resume.pt`` (written every ``checkpoint_every`` updates, removed at the end).
    """
    dev = setup_device(device, threads)
    folder = PreprocFolder(preproc_dir)
    patient = folder.patient
    mods = folder.resolve_modalities(cfg.modalities, "agent.modalities")
    post, affine = folder.stack("post", mods)
    landmarks = [str(lm) for lm in folder.landmarks("post")["landmark"]]
    targets = {lm: folder.target(lm, affine) for lm in landmarks}
    t0 = time.time()
    trainer, agents, specs = patient_trainer(post, affine, folder.mask("post", "brain"), folder.lesion("post"),
                                             {lm: t[1] for lm, t in targets.items()}, patient, cfg, seed, dev)
    members = range(cfg.ensemble)
    resume = Path(str(out_dir).rstrip("/") + ".resume.pt")
    if resume.exists():
        try:
            trainer.load_checkpoint(resume)
            log.info("resuming from %s at update %d", resume, trainer.updates_done)
        except (ValueError, KeyError, RuntimeError) as e:  # other landmarks or settings: start again
            log.warning("not resuming from %s (%s): training from the start", resume, e)
    rows = trainer.train(log_every=min(50, max(1, cfg.updates // 10)), checkpoint=resume, checkpoint_every=checkpoint_every)
    seconds = time.time() - t0
    states = []
    with atomic_dir(out_dir) as tmp:
        for i, (lm, v) in enumerate(agents):
            idx = [i * cfg.ensemble + j for j in members]
            state = {
                "state_dict": trainer.net.agent_state_dict(idx[0]),
                "members": [trainer.net.agent_state_dict(b) for b in idx],  # the first is state_dict
                "config": cfg.to_dict(),
                "patient": patient,
                "landmark": lm,
                "variant": v,
                "modalities": mods,
                "seed": specs[idx[0]].seed,
                "seeds": [specs[b].seed for b in idx],
                "target_world": targets[lm][0].tolist(),
                "in_channels": cfg.history * len(mods),
                "train_seconds": seconds,
                "agents_in_job": len(specs),
                "device": str(dev),
                "torch": torch.__version__,
                "replay_mb": trainer.replay.nbytes() / len(specs) / 2**20,
            }
            torch.save(state, tmp / layout.model_name(lm, v))
            write_table(member_log([rows[b] for b in idx]), tmp / layout.training_name(lm, v))
            states.append(state)
    if resume.exists():
        os.unlink(resume)
    log.info("%s: %d agents, %d updates each, in %.1f s on %s (%.1f s per agent)", patient, len(specs), cfg.updates,
             seconds, dev, seconds / len(specs))
    return states


def patient_trainer(post: np.ndarray, affine: np.ndarray, brain, cavity, targets: dict, patient: str, cfg: AgentConfig,
                    seed: int, device="cpu") -> tuple[Trainer, list, list]:
    """The batched trainer of a patient's agents (not yet trained): ``post`` (C, X, Y, Z), ``targets``
    {landmark: voxel position}; returns (trainer, agents [(landmark, variant)], specs), agent i's member j
    being spec ``i * cfg.ensemble + j``. Variants: both with a cavity, else the baseline."""
    spacing = spatial.spacing_of(affine)
    variants = methods.agent_variants(cavity is not None)
    landmarks = list(targets)
    # one set of training volumes for all agents, or, with a warp about the landmark, one set per landmark
    warped = cfg.warp_deg > 0 or cfg.warp_scale > 0 or cfg.warp_mm > 0
    sets = landmarks if warped else [None]
    blocks = [augmented_versions(post, brain, cavity, cfg.versions,
                                 np.random.default_rng(seed_for(seed, patient, *([lm] if warped else []), "versions")),
                                 cfg.fill_cavity, targets[lm] if warped else None, cfg.warp_deg, cfg.warp_scale,
                                 cfg.warp_mm, spacing) for lm in sets]
    agents = [(lm, v) for lm in landmarks for v in variants]
    specs = []
    for lm, v in agents:
        k = sets.index(lm if warped else None)
        for j in range(cfg.ensemble):
            specs.append(AgentSpec(tuple(targets[lm]), member_seed(seed, patient, lm, v, j), v == "guided",
                                   tuple(range(k * cfg.versions, (k + 1) * cfg.versions))))
    trainer = Trainer(np.concatenate(blocks), specs, cfg, device, mask=cavity, spacing=spacing,
                      noise_seed=seed_for(seed, patient, "noise"))
    log.info("%s: %d agents (%d landmarks x %s%s), %d training volumes of %s voxels, %d channels", patient, len(specs),
             len(landmarks), "/".join(variants), f" x {cfg.ensemble} members" if cfg.ensemble > 1 else "",
             trainer.vol.versions, "x".join(map(str, post.shape[1:])), post.shape[0])
    return trainer, agents, specs


def member_seed(seed: int, patient: str, landmark: str, variant: str, member: int) -> int:
    """The seed of an ensemble member; the first member's is the single agent's (an ensemble of one is the agent)."""
    return seed_for(seed, patient, landmark, variant) if member == 0 else seed_for(seed, patient, landmark, variant, f"member{member}")


def member_log(rows: list[list[dict]]) -> pd.DataFrame:
    """The training log of an agent: its members' log rows averaged per update (``members`` = how many)."""
    frames = [pd.DataFrame(r) for r in rows]
    if len(frames) == 1:
        return frames[0]
    df = pd.concat(frames).groupby("update", as_index=False, sort=True).mean(numeric_only=True)
    df.insert(1, "members", len(frames))
    return df


def load_members(path, device="cpu") -> tuple[list[DuelingQNet], dict]:
    """Every ensemble member's network of a model file (one for a single agent) and the file's content."""
    state = torch.load(path, map_location=device, weights_only=False)
    cfg = AgentConfig(**{k: v for k, v in state["config"].items() if k in AgentConfig.__dataclass_fields__})
    nets = []
    for sd in state.get("members") or [state["state_dict"]]:
        net = DuelingQNet(state["in_channels"], cfg.patch, cfg.width)
        net.load_state_dict(sd)
        nets.append(net)
    return nets, state


def redetect_landmarks(preproc_dir, models, variant: str, seed: int, out_csv, out_ends, out_traj,
                       device: str = "auto", threads: int | None = None, detection: dict | None = None,
                       seed_landmarks=None) -> pd.DataFrame:
    """Redetect every landmark of a variant in the pre-op scan from the fixed start points; ``models``: the
    trained folder of :func:`train_agents` (or the model files).

    Variant ``seeded`` (method ``agent_seeded``): the guided agents (the baseline ones without a resection
    mask) start in a box of ``seeded_box_mm`` centred on each landmark of ``seed_landmarks`` (a landmark file
    in pre-op world mm: ANTs SyN's), and fall back to that landmark beyond ``seeded_max_shift_mm``.

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
    ids = [str(lm) for lm in start_lm["landmark"]]
    tumour = folder.lesion("pre")
    seeded = variant == SEEDED
    agents = variant
    if seeded:
        if seed_landmarks is None:
            raise ValueError("the seeded redetection needs the registration's landmarks (seed_landmarks)")
        agents = "guided" if Path(models).is_dir() and all(
            (Path(models) / layout.model_name(lm, "guided")).is_file() for lm in ids) else "baseline"
        start_lm = read_landmarks(seed_landmarks)
        missing = [lm for lm in ids if lm not in set(start_lm["landmark"])]
        if missing:
            raise InputError(f"{seed_landmarks}: no landmark(s) {', '.join(missing)} to start the seeded agents from")
        log.info("seeded redetection: the %s agents from %s", agents, seed_landmarks)
    rows, ends, trajs = [], [], []
    for path in model_paths(models, ids, agents):
        nets, state = load_members(path, dev)
        cfg = dataclasses.replace(AgentConfig(**state["config"]), **(detection or {}))
        if state["variant"] != agents:
            raise ValueError(f"{path}: a {state['variant']} agent given to the {variant} redetection")
        pre, affine = folder.stack("pre", state["modalities"], cfg.test_smooth_mm)
        spacing = spatial.spacing_of(affine)
        lid = state["landmark"]
        box, max_shift = (cfg.seeded_box_mm, cfg.seeded_max_shift_mm) if seeded else (cfg.box_mm, cfg.max_shift_mm)
        centre_world, starts = landmark_starts(start_lm, lid, affine, cfg.n_starts, box, seed)
        forbidden = tumour if (agents == "guided" and cfg.guide_test) else None
        t0 = time.time()
        det = pool([redetect(net, pre, starts, cfg.patch, cfg.history, cfg.scales, cfg.max_test_steps, forbidden, spacing, dev)
                    for net in nets], spacing)
        seconds = time.time() - t0
        rec = detection_records(lid, det, np.concatenate([starts] * len(nets)), affine, centre_world, max_shift,
                                seconds, variant)
        rows.append(rec[0])
        ends += rec[1]
        trajs += rec[2]
    return write_detections(rows, ends, trajs, out_csv, out_ends, out_traj)
