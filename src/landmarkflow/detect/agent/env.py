"""A batch of landmark-search environments stepped at once, as tensors.

The volume (``C`` channels: co-registered modalities) stays on the device,
padded so that every patch of every scale is inside it. An agent is a voxel
position and a scale ``s`` (its step length and the spacing of its patch, in
voxels); the state is its ``P^3`` patch, sampled with stride ``s`` around it,
and the last ``history`` patches are stacked (frame history). Six actions move
it by ``s`` voxels along +-x, +-y, +-z. Reward: the decrease in distance to the
target (mm), clipped to [-1, 1]; with a guidance mask, -1 when the step lands
inside the mask. Nothing loops over agents in Python.
"""

from __future__ import annotations

import torch

from ..patches import PatchVolume

#: the six actions, in voxel units: +x, -x, +y, -y, +z, -z
#: trail entry of a position not visited yet (after a reset or a refinement)
EMPTY = -(10**6)

ACTIONS = torch.tensor([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.long)


class LandmarkEnv:
    """``n`` agents searching for a target in one :class:`PatchVolume`.

    Positions are integer voxel indices; the target is a (possibly
    sub-voxel) voxel position, one for all (3,) or one per agent (n, 3).
    ``mask`` (bool, the volume's grid, (X, Y, Z) for all versions or (K, X, Y, Z)
    one per version) switches on anatomical guidance: stepping into it gives
    reward -1, for every agent or for those where ``mask_on`` (n,) is true. ``keep_frames=False`` keeps no patches (a trainer that builds the
    states from position histories itself); then :meth:`reset_where` and
    :meth:`refine` never wait for the device.
    """

    def __init__(self, volume: PatchVolume, target, n: int, history: int = 4, mask: torch.Tensor | None = None,
                 scales=(3, 2, 1), terminal_mm: float = 1.0, osc_window: int = 20, mask_on: torch.Tensor | None = None,
                 keep_frames: bool = True):
        self.vol = volume
        self.device = volume.device
        self.n = n
        self.history = history
        self.scales = torch.tensor(scales, dtype=torch.long, device=self.device)
        self.target = torch.as_tensor(target, dtype=torch.float32, device=self.device).reshape(-1, 3).expand(n, 3).clone()
        self.mask = None if mask is None else mask.to(self.device).bool().reshape(-1)
        self._mask_strides = None if mask is None else torch.tensor([mask.shape[-2] * mask.shape[-1], mask.shape[-1], 1], device=self.device)
        self._mask_voxels = 0 if mask is None or mask.ndim == 3 else int(mask[0].numel())  # per version, when versioned
        self.mask_on = None if mask_on is None else torch.as_tensor(mask_on, device=self.device).bool()
        self.keep_frames = keep_frames
        self.terminal_mm = terminal_mm
        self.osc_window = osc_window
        self.actions = ACTIONS.to(self.device)
        self.pos = torch.zeros(n, 3, dtype=torch.long, device=self.device)
        self.version = torch.zeros(n, dtype=torch.long, device=self.device)  # which training volume each agent sees
        self.level = torch.zeros(n, dtype=torch.long, device=self.device)  # index into scales
        self.frames = None  # ring buffer (N, history, C, P, P, P); slot self.head holds the newest patch
        self.head = 0
        self.trail = None if keep_frames else torch.full((n, osc_window, 3), EMPTY, dtype=torch.long, device=self.device)

    # -------------------------------------------------------------- geometry
    @property
    def scale(self) -> torch.Tensor:
        return self.scales[self.level]

    def distance_mm(self, pos: torch.Tensor) -> torch.Tensor:
        return torch.linalg.norm((pos.float() - self.target) * self.vol.spacing, dim=-1)

    def in_mask(self, pos: torch.Tensor, version: torch.Tensor | None = None) -> torch.Tensor:
        """Is each position (N, 3) inside the guidance mask (of its agent's volume version, when versioned)?"""
        if self.mask is None:
            return torch.zeros(pos.shape[0], dtype=torch.bool, device=self.device)
        idx = (pos * self._mask_strides).sum(-1)
        if self._mask_voxels:
            idx = idx + (self.version if version is None else version) * self._mask_voxels
        return self.mask[idx]

    # -------------------------------------------------------------- episode
    def reset(self, pos: torch.Tensor, idx: torch.Tensor | None = None) -> None:
        """(Re)start agents ``idx`` (all if None) at ``pos``, coarsest scale, with a fresh frame history."""
        if idx is None:
            idx = torch.arange(self.n, device=self.device)
        pos = self.vol.clamp(pos.to(self.device).long())
        self.pos[idx] = pos
        self.level[idx] = 0
        patch = self.vol.patches(pos, self.scales[self.level[idx]], self.version[idx])
        if self.frames is None:
            self.frames = patch[:, None].repeat(1, self.history, 1, 1, 1, 1)
            self.trail = pos[:, None, :].repeat(1, self.osc_window, 1)
        else:
            self.frames[idx] = patch[:, None]  # every slot: the history starts full of the first patch
            self.trail[idx] = pos[:, None, :].repeat(1, self.osc_window, 1)
        self.trail[idx, :-1] = EMPTY  # empty trail: no revisits yet

    def reset_where(self, which: torch.Tensor, pos: torch.Tensor, version: torch.Tensor) -> None:
        """(Re)start the agents where ``which`` (n,) is true at ``pos`` (n, 3) on ``version`` (n,), coarsest
        scale, without patches (``keep_frames=False``): the others keep their state."""
        pos = self.vol.clamp(pos.long())
        self.pos = torch.where(which[:, None], pos, self.pos)
        self.level = torch.where(which, torch.zeros_like(self.level), self.level)
        self.version = torch.where(which, version, self.version)
        fresh = torch.full_like(self.trail, EMPTY)
        fresh[:, -1] = self.pos
        self.trail = torch.where(which[:, None, None], fresh, self.trail)

    def state(self) -> torch.Tensor:
        """(N, history * C, P, P, P), oldest frame first."""
        order = [(self.head + 1 + k) % self.history for k in range(self.history)]
        x = self.frames[:, order]
        return x.reshape(x.shape[0], -1, *x.shape[3:])

    def set_state(self, states: torch.Tensor) -> None:
        """Replace every agent's frame history with ``states`` (N, history * C, P, P, P), oldest first."""
        n = states.shape[0]
        self.frames = states.reshape(n, self.history, self.vol.channels, *states.shape[2:]).clone()
        self.head = self.history - 1

    def step(self, action: torch.Tensor):
        """Move every agent; return (reward, done, oscillating). Positions stay inside the volume."""
        old_d = self.distance_mm(self.pos)
        new = self.vol.clamp(self.pos + self.actions[action] * self.scale[:, None])
        new_d = self.distance_mm(new)
        reward = torch.clamp(old_d - new_d, -1.0, 1.0)
        if self.mask is not None:
            inside = self.in_mask(new) if self.mask_on is None else self.in_mask(new) & self.mask_on
            reward = torch.where(inside, torch.full_like(reward, -1.0), reward)
        self.pos = new
        self.trail = torch.cat([self.trail[:, 1:], new[:, None, :]], 1)
        oscillating = (self.trail == new[:, None, :]).all(-1).sum(1) >= 3
        if self.keep_frames:
            patch = self.vol.patches(new, self.scale, self.version)
            self.head = (self.head + 1) % self.history
            self.frames[:, self.head] = patch  # ring buffer: no copy of the older frames
        done = new_d <= self.terminal_mm
        return reward, done, oscillating

    def oscillation_centre(self, last: int = 4) -> torch.Tensor:
        """Mean of the last ``last`` positions: where an oscillating agent is centred (float voxels).

        Only positions visited since the last reset or refinement count: an agent stuck at the border
        of the volume oscillates (it stays in place) before it has made ``last`` moves.
        """
        recent = self.trail[:, -last:]
        valid = (recent[..., :1] != EMPTY).float()
        return (recent.float() * valid).sum(1) / valid.sum(1).clamp(min=1)

    def refine(self, which: torch.Tensor) -> torch.Tensor:
        """Move oscillating agents ``which`` (bool) to the next finer scale, at the centre of their
        oscillation; return those already at the finest scale (they are done)."""
        finest = self.level >= len(self.scales) - 1
        up = which & ~finest
        if not self.keep_frames:  # no patches to update: no branch, no wait for the device
            self.level = self.level + up.long()
            centre = self.vol.clamp(torch.round(self.oscillation_centre()).long())
            self.pos = torch.where(up[:, None], centre, self.pos)
            older = torch.arange(self.osc_window, device=self.device)[None, :, None] < self.osc_window - 1
            self.trail = torch.where(up[:, None, None] & older, torch.full_like(self.trail, EMPTY), self.trail)
            return which & finest
        if up.any():
            self.level[up] += 1
            idx = up.nonzero().squeeze(1)
            self.pos[idx] = self.vol.clamp(torch.round(self.oscillation_centre()[idx]).long())
            patch = self.vol.patches(self.pos[idx], self.scale[idx], self.version[idx])
            self.frames[idx] = patch[:, None]
            self.trail[idx, :-1] = EMPTY
        return which & finest
