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


#: DuelingQNet's layers, in order: (name in its state dict, kind, stride)
_LAYERS = (
    ("features.0", "conv", 2),
    ("features.2", "conv", 1),
    ("features.4", "conv", 1),
    ("value.0", "linear", None),
    ("value.2", "linear", None),
    ("advantage.0", "linear", None),
    ("advantage.2", "linear", None),
)


class StackedQNet(nn.Module):
    """``B`` independent :class:`DuelingQNet`, their parameters stacked along a first axis of length ``B``.

    Input (B, N, history * channels, P, P, P), output (B, N, 6): agent ``b`` sees only its own ``N``
    samples and its own weights, and a gradient of agent ``b``'s loss reaches only its parameters.
    ``grouped=True`` (for GPUs, where the loop is bound by kernel launches): each convolution is one
    grouped convolution over all agents and each linear layer one batched matrix product.
    ``grouped=False`` (for CPUs): every agent's layers run in turn, because on 2 CPU cores a grouped 3D
    convolution took 1.4x the time of separate ones per agent, and because then an agent gets exactly
    the numbers it gets alone (grouped, they differ in the last bits).
    """

    def __init__(self, nets: list[DuelingQNet], grouped: bool = False):
        super().__init__()
        if not nets:
            raise ValueError("StackedQNet needs at least one network")
        self.agents = len(nets)
        self.grouped = grouped
        self.strides = {}
        states = [n.state_dict() for n in nets]
        for name, kind, stride in _LAYERS:
            key = name.replace(".", "_")
            self.register_parameter(key + "_w", nn.Parameter(torch.stack([s[name + ".weight"] for s in states])))
            self.register_parameter(key + "_b", nn.Parameter(torch.stack([s[name + ".bias"] for s in states])))
            self.strides[key] = stride

    def _conv(self, x: torch.Tensor, key: str, i: int | None) -> torch.Tensor:
        """Agent i's layer on x (N, C, ...), or the grouped layer of all agents on x (B, N, C, ...)."""
        w, b, stride = getattr(self, key + "_w"), getattr(self, key + "_b"), self.strides[key]
        if i is not None:
            return nn.functional.conv3d(x, w[i], b[i], stride=stride)
        nb, n = x.shape[:2]
        xg = x.transpose(0, 1).reshape(n, nb * x.shape[2], *x.shape[3:])
        y = nn.functional.conv3d(xg, w.reshape(-1, *w.shape[2:]), b.reshape(-1), stride=stride, groups=nb)
        return y.reshape(n, nb, w.shape[1], *y.shape[2:]).transpose(0, 1)

    def _linear(self, x: torch.Tensor, key: str, i: int | None) -> torch.Tensor:
        """Agent i's layer on x (N, F), or all agents' on x (B, N, F) as one batched product."""
        w, b = getattr(self, key + "_w"), getattr(self, key + "_b")
        if i is not None:
            return nn.functional.linear(x, w[i], b[i])
        return torch.baddbmm(b[:, None, :], x, w.transpose(1, 2))

    def _net(self, x: torch.Tensor, i: int | None = None) -> torch.Tensor:
        relu = nn.functional.relu
        f = relu(self._conv(x, "features_0", i))
        f = relu(self._conv(f, "features_2", i))
        f = relu(self._conv(f, "features_4", i)).flatten(-4)  # (C, D, H, W) in this order, whatever the memory layout
        v = self._linear(relu(self._linear(f, "value_0", i)), "value_2", i)
        a = self._linear(relu(self._linear(f, "advantage_0", i)), "advantage_2", i)
        return v + a - a.mean(-1, keepdim=True)

    def forward(self, x: torch.Tensor, agents: list[int] | None = None) -> torch.Tensor:
        """Q-values (A, N, 6) of agents ``agents`` (all if None) for their inputs ``x`` (A, N, ...). On the CPU only
        those agents' layers run; grouped, every agent's do and the others' outputs are dropped."""
        if self.grouped:
            if agents is None or len(agents) == self.agents:
                return self._net(x)
            full = x.new_zeros((self.agents, *x.shape[1:]))
            full[agents] = x
            return self._net(full)[agents]
        order = range(self.agents) if agents is None else agents
        return torch.stack([self._net(x[k], i) for k, i in enumerate(order)])  # an agent's input keeps its memory layout

    def agent_state_dict(self, b: int) -> dict:
        """Agent ``b``'s weights as a :class:`DuelingQNet` state dict (the model files' format)."""
        out = {}
        for name, _, _ in _LAYERS:
            key = name.replace(".", "_")
            out[name + ".weight"] = getattr(self, key + "_w")[b].detach().clone()
            out[name + ".bias"] = getattr(self, key + "_b")[b].detach().clone()
        return out
