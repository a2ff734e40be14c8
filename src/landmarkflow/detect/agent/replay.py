"""Compact experience replay of a batch of agents: positions and scales, not patches.

A transition is stored as the agent's last ``history`` positions before and
after the step (int16 voxel indices), their scales, the action, the reward,
the done flag and the training-volume version; the learner gathers the
patches from the volume on the device when it samples a batch. About 60 bytes
per transition instead of 2 x history x P^3 floats (108 kB for P = 15): a
replay of 100,000 transitions takes 6 MB per agent. Every agent has its own
memory (a first axis of length ``agents``); all add the same number of
transitions at a time, so they share the write head.
"""

from __future__ import annotations

import torch


class PositionReplay:
    def __init__(self, capacity: int, history: int, device, agents: int = 1):
        self.capacity = capacity
        self.device = device
        b = agents
        self.pos = torch.zeros(b, capacity, history + 1, 3, dtype=torch.int16, device=device)  # h positions + the next one
        self.scale = torch.zeros(b, capacity, history + 1, dtype=torch.int8, device=device)
        self.action = torch.zeros(b, capacity, dtype=torch.long, device=device)
        self.reward = torch.zeros(b, capacity, dtype=torch.float32, device=device)
        self.done = torch.zeros(b, capacity, dtype=torch.bool, device=device)
        self.version = torch.zeros(b, capacity, dtype=torch.int8, device=device)
        self._rows = torch.arange(b, device=device)[:, None]
        self.size = 0
        self.head = 0

    def nbytes(self) -> int:
        """Bytes of all agents' memories."""
        return sum(t.element_size() * t.nelement() for t in (self.pos, self.scale, self.action, self.reward, self.done, self.version))

    def add(self, pos_hist, scale_hist, action, reward, done, version) -> None:
        """Add n transitions per agent: pos_hist (B, n, h+1, 3), scale_hist (B, n, h+1), the others (B, n)."""
        n = action.shape[1]
        idx = (self.head + torch.arange(n, device=self.device)) % self.capacity
        self.pos[:, idx] = pos_hist.to(torch.int16)
        self.scale[:, idx] = scale_hist.to(torch.int8)
        self.action[:, idx] = action
        self.reward[:, idx] = reward
        self.done[:, idx] = done
        self.version[:, idx] = version.to(torch.int8)
        self.head = (self.head + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, idx: torch.Tensor):
        """Transitions ``idx`` (B, batch) (each below :attr:`size`): positions, scales, actions, rewards,
        done flags, versions, each (B, batch, ...)."""
        r = self._rows
        return (self.pos[r, idx].long(), self.scale[r, idx].long(), self.action[r, idx], self.reward[r, idx],
                self.done[r, idx], self.version[r, idx].long())
