"""The agents' greedy multi-scale search in the pre-operative scan from fixed starts (:mod:`..search` has the
starts and the robust centre)."""

from __future__ import annotations


import numpy as np
import torch

from ..patches import PatchVolume
from ..search import Detection, robust_centre
from .env import ACTIONS, LandmarkEnv
from .network import DuelingQNet


@torch.no_grad()
def redetect(net: DuelingQNet, volume: np.ndarray, starts: np.ndarray, patch: int, history: int, scales,
             max_steps: int = 150, forbidden: np.ndarray | None = None, spacing=(1.0, 1.0, 1.0), device="cpu",
             centre: str = "median") -> Detection:
    """Greedy search from every start at once (:func:`greedy_search`) of one agent in ``volume`` (C, X, Y, Z);
    the prediction is the robust centre (``centre``, :func:`..search.robust_centre`) of the end points."""
    device = torch.device(device)
    net = net.to(device).eval()
    vol = PatchVolume(torch.as_tensor(volume, dtype=torch.float32, device=device), patch, max(scales), spacing)
    forb = None if forbidden is None else torch.as_tensor(np.asarray(forbidden, bool), device=device)
    ends, traj, steps = greedy_search(net, vol, torch.as_tensor(starts, device=device), history, scales, max_steps, forb)
    ends = ends.cpu().numpy().astype(float)
    middle = robust_centre(ends, centre, spacing)
    spread = np.linalg.norm((ends - middle) * np.asarray(spacing), axis=1)
    return Detection(middle, ends, traj.cpu().numpy(), steps.cpu().numpy(), spread)


@torch.no_grad()
def greedy_search(q_fn, vol: PatchVolume, starts: torch.Tensor, history: int, scales, max_steps: int,
                  forbidden: torch.Tensor | None = None, version: torch.Tensor | None = None):
    """Greedy search of ``n`` agents at once from ``starts`` (n, 3) in ``vol`` (volume ``version`` (n,) each, 0
    if None); an agent stops when it oscillates at the finest scale, at the centre of its oscillation.
    ``q_fn`` maps states (n, history * C, P, P, P) to Q-values (n, 6). ``forbidden`` (bool, the volume's grid):
    actions that would land inside it are not taken (the guided agent's test-time use of the pre-op tumour).
    Returns the end points (n, 3, float voxels), the trajectories (steps + 1, n, 3) and the steps taken (n,)."""
    device = vol.device
    n = len(starts)
    env = LandmarkEnv(vol, torch.zeros(3), n, history, None, scales)
    if version is not None:
        env.version = version.to(device).long()
    env.reset(starts.to(device))
    forb = None if forbidden is None else forbidden.to(device).reshape(-1)
    strides = torch.tensor([vol.shape[1] * vol.shape[2], vol.shape[2], 1], device=device)
    actions = ACTIONS.to(device)
    active = torch.ones(n, dtype=torch.bool, device=device)
    steps = torch.zeros(n, dtype=torch.long, device=device)
    traj = [env.pos.clone()]
    ends = torch.zeros(n, 3, device=device)
    for _ in range(max_steps):
        q = q_fn(env.state())
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
    return ends, torch.stack(traj), steps
