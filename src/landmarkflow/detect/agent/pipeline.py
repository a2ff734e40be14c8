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
from ...core.layout import FINE
from ...core.errors import InputError
from ...core.files import atomic_dir, write_table
from ...imaging import spatial
from ...io.landmarks import read_landmarks
from ..augment import augmented_versions
from ...core.device import seed_for, setup_device, write_device
from ..inputs import network_input, test_scan, training_scan
from ..search import SEEDED_VARIANT, detection_records, landmark_starts, model_paths, pool, write_detections
from .detect import redetect
from .fine import fine_box, fine_starts, fine_trainer, sample_box, sample_mask
from .network import DuelingQNet
from .train import AgentConfig, AgentSpec, Trainer

log = logging.getLogger(__name__)


def train_agents(preproc_dir, cfg: AgentConfig, seed: int, out_dir, device: str = "auto", threads: int | None = None,
                 checkpoint_every: int = 200, variants=None, lesions_dir=None) -> list[dict]:
    """Train every agent of a patient in one batched loop: each post-op landmark x variant (both when the
    patient has a resection mask, else the baseline), on the post-op scan, then (``cfg.fine_factor`` > 0) the fine
    agents, one per landmark (:mod:`.fine`), in a second batched loop. Writes ``out_dir`` whole or not at all: per
    agent its model (``<landmark>_<variant>.pt``, ``<landmark>_fine.pt``) and training log
    (``<landmark>_<variant>_training.tsv``).

    The patient's volumes and augmented copies are made once and shared by the agents (with a warp in the
    config, each landmark gets its own copies warped about it). An interrupted training resumes from
    ``<out_dir>.resume.pt`` (``.fine.resume.pt`` for the fine agents; written every ``checkpoint_every`` updates,
    removed at the end). ``variants``: a subset of the patient's variants to train (a study's choice; default all).
    ``lesions_dir``: the patient's lesion folder (the cavity the guided agents keep out of, given or derived);
    without it, the manifest's masks.
    """
    dev = setup_device(device, threads)
    folder = PreprocFolder(preproc_dir, lesions=lesions_dir)
    patient = folder.patient
    mods = folder.resolve_modalities(cfg.modalities, "agent.modalities")
    post, affine = training_scan(folder, mods, cfg)
    landmarks = [str(lm) for lm in folder.landmarks("post")["landmark"]]
    targets = {lm: folder.target(lm, affine) for lm in landmarks}
    voxels = {lm: t[1] for lm, t in targets.items()}
    cavity = folder.lesion("post")
    t0 = time.time()
    trainer, agents, specs, blocks = patient_trainer(post, affine, folder.mask("post", "brain"), cavity, voxels, patient,
                                                     cfg, seed, dev, variants)
    base = str(out_dir).rstrip("/")
    rows = _train(trainer, cfg.updates, Path(base + ".resume.pt"), checkpoint_every)
    jobs = [(trainer, agents, specs, rows, cfg, time.time() - t0)]
    if cfg.fine_factor > 0:
        t1 = time.time()
        fine_specs_seeds = {lm: seed_for(seed, patient, lm, FINE) for lm in landmarks}
        ftrainer, _ = fine_trainer(blocks, cavity, voxels, fine_specs_seeds, cfg, spatial.spacing_of(affine), dev,
                                   noise_seed=seed_for(seed, patient, "fine-noise"), jitter_seed=seed_for(seed, patient, "fine-box"))
        frows = _train(ftrainer, ftrainer.cfg.updates, Path(base + ".fine.resume.pt"), checkpoint_every)
        jobs.append((ftrainer, [(lm, FINE) for lm in landmarks], ftrainer.agents, frows, ftrainer.cfg, time.time() - t1))
    states = []
    with atomic_dir(out_dir) as tmp:
        for job in jobs:
            states += _save_agents(tmp, *job, cfg=cfg, patient=patient, mods=mods, targets=targets, device=dev)
        write_device(tmp, dev, device)
    for resume in (Path(base + ".resume.pt"), Path(base + ".fine.resume.pt")):
        if resume.exists():
            os.unlink(resume)
    log.info("%s: %d agents in %.1f s on %s (%.1f s per agent); updates %s", patient, len(states), time.time() - t0, dev,
             (time.time() - t0) / len(states), ", ".join(f"{s['landmark']}_{s['variant']} {s['updates']}" for s in states))
    return states


def _train(trainer: Trainer, updates: int, resume: Path, checkpoint_every: int) -> list:
    """Train, resuming from ``resume`` when it is a checkpoint of these agents and settings."""
    if resume.exists():
        try:
            trainer.load_checkpoint(resume)
            log.info("resuming from %s at update %d", resume, trainer.updates_done)
        except (ValueError, KeyError, RuntimeError) as e:  # other landmarks or settings: start again
            log.warning("not resuming from %s (%s): training from the start", resume, e)
    return trainer.train(log_every=min(50, max(1, updates // 10)), checkpoint=resume, checkpoint_every=checkpoint_every)


def _save_agents(folder: Path, trainer: Trainer, agents: list, specs: list, rows: list, job_cfg: AgentConfig,
                 seconds: float, cfg: AgentConfig, patient: str, mods: list, targets: dict, device) -> list[dict]:
    """The model file and training log of every agent of one batched training (members of an ensemble in one file)."""
    members = job_cfg.ensemble
    states = []
    for i, (lm, v) in enumerate(agents):
        idx = [i * members + j for j in range(members)]
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
            "updates": trainer.converged_at[idx[0]] or trainer.updates_done,
            "train_seconds": seconds,
            "agents_in_job": len(specs),
            "device": str(device),
            "torch": torch.__version__,
            "replay_mb": trainer.replay.nbytes() / len(specs) / 2**20,
        }
        torch.save(state, folder / layout.model_name(lm, v))
        write_table(member_log([rows[b] for b in idx]), folder / layout.training_name(lm, v))
        states.append(state)
    return states


def patient_trainer(post: np.ndarray, affine: np.ndarray, brain, cavity, targets: dict, patient: str, cfg: AgentConfig,
                    seed: int, device="cpu", variants=None) -> tuple[Trainer, list, list, dict]:
    """The batched trainer of a patient's agents (not yet trained): ``post`` (C, X, Y, Z), ``targets``
    {landmark: voxel position}; returns (trainer, agents [(landmark, variant)], specs, {landmark: its training
    volumes}), agent i's member j being spec ``i * cfg.ensemble + j``. Variants: both with a cavity, else the baseline."""
    spacing = spatial.spacing_of(affine)
    variants = [v for v in methods.agent_variants(cavity is not None) if variants is None or v in variants]
    landmarks = list(targets)
    # one set of training volumes for all agents, or, with a warp about the landmark, one set per landmark
    warped = cfg.warp_deg > 0 or cfg.warp_scale > 0 or cfg.warp_mm > 0
    sets = landmarks if warped else [None]
    blocks = [network_input(augmented_versions(
        post, brain, cavity, cfg.versions, np.random.default_rng(seed_for(seed, patient, *([lm] if warped else []), "versions")),
        cfg.fill_cavity, targets[lm] if warped else None, cfg.warp_deg, cfg.warp_scale, cfg.warp_mm, spacing,
        cfg.contrast_aug, cfg.blur_aug_mm), cfg.input_norm, spacing) for lm in sets]
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
    return trainer, agents, specs, {lm: blocks[sets.index(lm if warped else None)] for lm in landmarks}


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


def model_config(state: dict) -> AgentConfig:
    """The training settings a model file was made with (keys of other versions left out)."""
    return AgentConfig(**{k: v for k, v in state["config"].items() if k in AgentConfig.__dataclass_fields__})


def load_members(path, device="cpu") -> tuple[list[DuelingQNet], dict]:
    """Every ensemble member's network of a model file (one for a single agent) and the file's content."""
    state = torch.load(path, map_location=device, weights_only=False)
    cfg = model_config(state)
    nets = []
    for sd in state.get("members") or [state["state_dict"]]:
        net = DuelingQNet(state["in_channels"], cfg.patch, cfg.width)
        net.load_state_dict(sd)
        nets.append(net)
    return nets, state


def redetect_landmarks(preproc_dir, models, variant: str, seed: int, out_csv, out_ends, out_traj,
                       device: str = "auto", threads: int | None = None, detection: dict | None = None,
                       seed_landmarks=None, lesions_dir=None) -> pd.DataFrame:
    """Redetect every landmark of a variant in the pre-op scan; ``models``: the trained folder of
    :func:`train_agents` (or the model files).

    The variant's agents search from the fixed start points in a box of ``box_mm`` around the rigidly aligned
    post-op position; a prediction farther than ``max_shift_mm`` from it is implausible: it falls back to that
    position (``fallback`` 1). Then, where the folder has the landmark's fine agent, it refines the prediction
    from ``fine_starts`` starts around it on the finer local grid (:mod:`.fine`), and a refinement farther than
    ``fine_max_shift_mm`` is not taken.

    Variant ``seeded`` (method ``agent_seeded``): started at the registration's landmarks (``seed_landmarks``, a
    landmark file in pre-op world mm: ANTs SyN's). With fine agents it is their refinement of that landmark
    (falling back to it beyond ``fine_max_shift_mm``); without, the guided agents (the baseline ones without a
    resection mask) search from a box of ``seeded_box_mm`` around it and fall back to it beyond
    ``seeded_max_shift_mm``.

    Writes ``landmark,x,y,z,spread_mm,fallback`` (+ the refinement's ``refined``, ``fine_shift_mm``,
    ``fine_spread_mm``; pre-op world RAS mm), the end point of every start (``out_ends``, column ``stage``:
    coarse or fine) and every trajectory (``out_traj``). ``detection`` (the config's
    :data:`..core.config.AGENT_DETECTION_KEYS`) overrides what the models were trained with.
    """
    dev = setup_device(device, threads)
    folder = PreprocFolder(preproc_dir, lesions=lesions_dir)
    start_lm = folder.landmarks("post")
    ids = [str(lm) for lm in start_lm["landmark"]]
    seeded = variant == SEEDED_VARIANT
    fine = _fine_models(models, ids)
    agents = variant
    if seeded:
        if seed_landmarks is None:
            raise ValueError("the seeded redetection needs the registration's landmarks (seed_landmarks)")
        agents = FINE if fine else ("guided" if Path(models).is_dir() and all(
            (Path(models) / layout.model_name(lm, "guided")).is_file() for lm in ids) else "baseline")
        start_lm = read_landmarks(seed_landmarks)
        missing = [lm for lm in ids if lm not in set(start_lm["landmark"])]
        if missing:
            raise InputError(f"{seed_landmarks}: no landmark(s) {', '.join(missing)} to start the seeded agents from")
        log.info("seeded redetection: the %s agents from %s", agents, seed_landmarks)
    scans: dict = {}  # the prepared pre-op scan per modalities and settings, made once
    rows, ends, trajs = [], [], []
    for path in model_paths(models, ids, agents):
        nets, state = load_members(path, dev)
        cfg = dataclasses.replace(model_config(state), **(detection or {}))
        if state["variant"] != agents:
            raise ValueError(f"{path}: a {state['variant']} agent given to the {variant} redetection")
        key = (tuple(state["modalities"]), cfg.match_resolution, cfg.test_smooth_mm, cfg.match_intensities, cfg.input_norm)
        if key not in scans:
            scans[key] = test_scan(folder, state["modalities"], cfg)
        pre, affine = scans[key]
        lid = state["landmark"]
        forbidden = folder.lesion("pre") if (agents in ("guided", FINE) and cfg.guide_test) else None
        if agents == FINE:  # seeded, fine agents: the refinement of the registration's landmark
            centre_world = start_lm.loc[start_lm["landmark"] == lid, ["x", "y", "z"]].to_numpy(float)[0]
            row, e, tr = refine_landmark(nets[0], pre, affine, lid, centre_world, cfg, forbidden, seed, dev, variant,
                                         fall_back=True)
        else:
            row, e, tr = _coarse(nets, pre, affine, start_lm, lid, cfg, seeded, forbidden, seed, dev, variant)
            if lid in fine:  # a fallback is not refined
                row.update(refined=0, fine_shift_mm=np.nan, fine_spread_mm=np.nan)
            if lid in fine and not row["fallback"]:
                fine_nets, _ = load_members(fine[lid], dev)
                point = np.array([row["x"], row["y"], row["z"]])
                frow, fe, ftr = refine_landmark(fine_nets[0], pre, affine, lid, point, cfg, forbidden, seed, dev, variant)
                row = {**row, **{k: frow[k] for k in ("x", "y", "z", "refined", "fine_shift_mm", "fine_spread_mm")},
                       "coarse_x": point[0], "coarse_y": point[1], "coarse_z": point[2],
                       "seconds": round(row["seconds"] + frow["seconds"], 3)}
                e, tr = e + _offset(fe, len(e)), tr + _offset(ftr, len(e))
        rows.append(row)
        ends += e
        trajs += tr
    return write_detections(rows, ends, trajs, out_csv, out_ends, out_traj)


def _fine_models(models, ids) -> dict:
    """{landmark: fine model file} of the landmarks that have one in a trained folder."""
    if not (isinstance(models, (str, Path)) and Path(models).is_dir()):
        return {}
    return {lm: Path(models) / layout.model_name(lm, FINE) for lm in ids if (Path(models) / layout.model_name(lm, FINE)).is_file()}


def _coarse(nets, pre, affine, start_lm, lid, cfg, seeded, forbidden, seed, dev, label):
    """One landmark's search by the coarse agents (all ensemble members, pooled) as table records."""
    spacing = spatial.spacing_of(affine)
    box, max_shift = (cfg.seeded_box_mm, cfg.seeded_max_shift_mm) if seeded else (cfg.box_mm, cfg.max_shift_mm)
    centre_world, starts = landmark_starts(start_lm, lid, affine, cfg.n_starts, box, seed)
    t0 = time.time()
    det = pool([redetect(net, pre, starts, cfg.patch, cfg.history, cfg.scales, cfg.max_test_steps, forbidden, spacing, dev,
                         cfg.centre) for net in nets], spacing, cfg.centre)
    row, ends, trajs = detection_records(lid, det, np.concatenate([starts] * len(nets)), affine, centre_world, max_shift,
                                         time.time() - t0, label)
    return row, [{**e, "stage": "coarse"} for e in ends], trajs


def refine_landmark(net: DuelingQNet, pre: np.ndarray, affine: np.ndarray, lid: str, point_world, cfg: AgentConfig,
                    forbidden, seed: int, device, label: str, fall_back: bool = False):
    """The fine agent's refinement of a point (world mm) on the finer local grid around it: (row, end points,
    trajectories) in world mm. A refinement farther than ``fine_max_shift_mm`` keeps the point (``refined`` 0;
    with ``fall_back``, the point is the method's answer and ``fallback`` is 1)."""
    point_world = np.asarray(point_world, dtype=float)
    spacing = spatial.spacing_of(affine)
    box = fine_box(spatial.world_to_voxel(point_world, affine), cfg, spacing)
    local = sample_box(pre, box)
    banned = None if forbidden is None else sample_mask(forbidden, box)
    starts = fine_starts(box, cfg.fine_starts, cfg.fine_box_mm, spacing, seed)
    t0 = time.time()
    det = redetect(net, local, starts, cfg.patch, cfg.history, cfg.fine_scales, cfg.max_test_steps, banned,
                   spacing / cfg.fine_factor, device, cfg.centre)
    row, ends, trajs = detection_records(lid, det, starts, box.affine(affine), point_world, cfg.fine_max_shift_mm,
                                         time.time() - t0, f"{label}, fine",
                                         "the registration's landmark" if fall_back else "the coarse search's point")
    shift = float(np.linalg.norm(np.array([row["x"], row["y"], row["z"]]) - point_world))
    row.update(refined=int(not row["fallback"]), fine_shift_mm=round(shift, 4), fine_spread_mm=row.pop("spread_mm"))
    if fall_back:
        row["spread_mm"] = row["fine_spread_mm"]
    else:
        row["fallback"] = 0
    return row, [{**e, "stage": "fine"} for e in ends], trajs


def _offset(records: list, n: int) -> list:
    """End point or trajectory records with their start numbered after ``n`` others."""
    out = []
    for r in records:
        if isinstance(r, dict):
            out.append({**r, "start": r["start"] + n})
        else:
            out.append((r[0], r[1] + n, *r[2:]))
    return out
