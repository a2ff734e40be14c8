"""Redetection in the pre-operative scan: 20 fixed starts, greedy multi-scale search, robust centre."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import spatial
from .env import ACTIONS, LandmarkEnv, PatchVolume
from .network import DuelingQNet


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


def robust_centre(points: np.ndarray) -> np.ndarray:
    """Coordinate-wise median of the end points (more robust than their mean)."""
    return np.median(points, axis=0)


@dataclass
class Detection:
    centre: np.ndarray  # voxel coordinates
    ends: np.ndarray  # (n, 3) end points, voxels
    trajectories: np.ndarray  # (steps + 1, n, 3) positions, voxels
    steps: np.ndarray  # (n,) steps taken until the agent stopped
    spread_vox: np.ndarray  # (n,) distances of the end points to the centre (voxels scaled by spacing: mm)


@torch.no_grad()
def redetect(net: DuelingQNet, volume: np.ndarray, starts: np.ndarray, patch: int, history: int, scales,
             max_steps: int = 150, forbidden: np.ndarray | None = None, spacing=(1.0, 1.0, 1.0), device="cpu") -> Detection:
    """Greedy search from every start at once; stop an agent when it oscillates at the finest scale.

    ``forbidden`` (bool volume): actions that would land inside it are not taken
    (the guided agent's test-time use of the pre-op tumour mask).
    """
    device = torch.device(device)
    net = net.to(device).eval()
    vol = PatchVolume(torch.as_tensor(volume, dtype=torch.float32, device=device), patch, max(scales), spacing)
    n = len(starts)
    env = LandmarkEnv(vol, torch.zeros(3), n, history, None, scales)
    env.reset(torch.as_tensor(starts, device=device))
    forb = None if forbidden is None else torch.as_tensor(np.asarray(forbidden, bool), device=device).reshape(-1)
    strides = torch.tensor([volume.shape[-2] * volume.shape[-1], volume.shape[-1], 1], device=device)
    actions = ACTIONS.to(device)
    active = torch.ones(n, dtype=torch.bool, device=device)
    steps = torch.zeros(n, dtype=torch.long, device=device)
    traj = [env.pos.clone()]
    ends = torch.zeros(n, 3, device=device)
    for _ in range(max_steps):
        q = net(env.state())
        if forb is not None:
            nxt = vol.clamp(env.pos[:, None, :] + actions[None] * env.scale[:, None, None])  # (n, 6, 3)
            blocked = forb[(nxt * strides).sum(-1)]
            q = torch.where(blocked & ~blocked.all(1, keepdim=True), torch.full_like(q, -torch.inf), q)
        action = q.argmax(1)
        before = env.pos.clone()
        _, _, osc = env.step(action)
        env.pos = torch.where(active[:, None], env.pos, before)  # stopped agents stay where they stopped
        steps += active.long()
        centre = env.oscillation_centre()
        finished = env.refine(osc & active)
        ends[finished] = centre[finished]  # an agent stops at the centre of its oscillation
        active &= ~finished
        traj.append(env.pos.clone())
        if not active.any():
            break
    ends[active] = env.pos[active].float()  # agents that ran out of steps stop where they are
    ends = ends.cpu().numpy().astype(float)
    centre = robust_centre(ends)
    spread = np.linalg.norm((ends - centre) * np.asarray(spacing), axis=1)
    return Detection(centre, ends, torch.stack(traj).cpu().numpy(), steps.cpu().numpy(), spread)


def pool(dets: list[Detection], spacing=(1.0, 1.0, 1.0)) -> Detection:
    """The detections of an ensemble's members from the same starts as one: every member's end points (member
    by member), their coordinate-wise median as the centre and the spread about it; trajectories that ended
    early keep their last position."""
    if len(dets) == 1:
        return dets[0]
    ends = np.concatenate([d.ends for d in dets])
    centre = robust_centre(ends)
    t = max(len(d.trajectories) for d in dets)
    trajs = np.concatenate([np.concatenate([d.trajectories, np.repeat(d.trajectories[-1:], t - len(d.trajectories), 0)])
                            for d in dets], axis=1)
    spread = np.linalg.norm((ends - centre) * np.asarray(spacing), axis=1)
    return Detection(centre, ends, trajs, np.concatenate([d.steps for d in dets]), spread)
