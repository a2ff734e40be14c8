"""Dueling deep Q-network (Wang et al., ICML 2016) on stacked 3D patches."""

from __future__ import annotations

import torch
from torch import nn


class DuelingQNet(nn.Module):
    """Input (N, history * channels, P, P, P); output Q-values (N, 6).

    Small on purpose (about 0.1-0.2 M parameters): one patient, one landmark,
    a minute of training on a CPU.
    """

    def __init__(self, in_channels: int = 4, patch: int = 15, width: int = 32, hidden: int = 128, n_actions: int = 6):
        super().__init__()
        if patch < 13:
            raise ValueError(f"agent.patch={patch}: the network needs patches of at least 13 voxels")
        self.features = nn.Sequential(
            nn.Conv3d(in_channels, width, kernel_size=4, stride=2),
            nn.ReLU(inplace=True),
            nn.Conv3d(width, width, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.Conv3d(width, 2 * width, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_feat = self.features(torch.zeros(1, in_channels, patch, patch, patch)).shape[1]
        self.value = nn.Sequential(nn.Linear(n_feat, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))
        self.advantage = nn.Sequential(nn.Linear(n_feat, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n_actions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        a = self.advantage(f)
        return self.value(f) + a - a.mean(1, keepdim=True)
