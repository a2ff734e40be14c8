"""Compact experience replay: positions and scales, not patches.

A transition is stored as the agent's last ``history`` positions before and
after the step (int16 voxel indices), their scales, the action, the reward,
the done flag and the training-volume version; the learner gathers the
patches from the volume on the device when it samples a batch. About 60 bytes
per transition instead of 2 x history x P^3 floats (108 kB for P = 15): a
replay of 100,000 transitions takes 6 MB.
"""

from __future__ import annotations

import torch


class PositionReplay:
    def __init__(self, capacity: int, history: int, device, generator: torch.Generator):
        self.capacity = capacity
        self.device = device
        self.gen = generator
        self.pos = torch.zeros(capacity, history + 1, 3, dtype=torch.int16, device=device)  # h positions + the next one
        self.scale = torch.zeros(capacity, history + 1, dtype=torch.int8, device=device)
        self.action = torch.zeros(capacity, dtype=torch.long, device=device)
        self.reward = torch.zeros(capacity, dtype=torch.float32, device=device)
        self.done = torch.zeros(capacity, dtype=torch.bool, device=device)
        self.version = torch.zeros(capacity, dtype=torch.int8, device=device)
        self.size = 0
        self.head = 0

    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in (self.pos, self.scale, self.action, self.reward, self.done, self.version))

    def add(self, pos_hist, scale_hist, action, reward, done, version) -> None:
        """Add a batch of transitions: pos_hist (N, h+1, 3), scale_hist (N, h+1)."""
        n = action.shape[0]
        idx = (self.head + torch.arange(n, device=self.device)) % self.capacity
        self.pos[idx] = pos_hist.to(torch.int16)
        self.scale[idx] = scale_hist.to(torch.int8)
        self.action[idx] = action
        self.reward[idx] = reward
        self.done[idx] = done
        self.version[idx] = version.to(torch.int8)
        self.head = (self.head + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch: int):
        idx = torch.randint(0, self.size, (batch,), device=self.device, generator=self.gen)
        return self.pos[idx].long(), self.scale[idx].long(), self.action[idx], self.reward[idx], self.done[idx], self.version[idx].long()
