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
