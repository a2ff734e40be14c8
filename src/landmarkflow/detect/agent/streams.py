"""Random numbers for a batch of agents that do not depend on the batch.

Agent ``b``'s numbers are a hash of its seed, a call counter and the position
of the number in the draw, computed on the device with 32-bit integer
arithmetic (in int64, so that nothing overflows). An agent so draws the same
numbers whether it trains alone or with 63 others, on any device, and a
batched training can be compared with trainings one by one. All agents make
the same calls in step, so the counter is shared. The hash is Mueller's
32-bit integer mix (three xor-shift and two multiply rounds), good enough for
exploration, start points and replay sampling, not for cryptography.
"""

from __future__ import annotations

import math

import torch

M32 = 0xFFFFFFFF
_MUL = 0x45D9F3B


def mix32(x):
    """The 32-bit mix of ``x`` (an int or an int64 tensor with values in [0, 2^32))."""
    x = x ^ (x >> 16)
    x = (x * _MUL) & M32
    x = x ^ (x >> 16)
    x = (x * _MUL) & M32
    return x ^ (x >> 16)


class AgentStreams:
    """One random stream per agent: ``seeds`` (B ints). Every draw returns (B, *shape)."""

    def __init__(self, seeds, device):
        self.device = torch.device(device)
        self.keys = torch.tensor([mix32(int(s) & M32) for s in seeds], dtype=torch.long, device=self.device)
        self.counter = 0

    def bits(self, *shape: int) -> torch.Tensor:
        """Integers in [0, 2^32), (B, *shape)."""
        self.counter += 1
        c = mix32((self.counter * 0x9E3779B1) & M32)
        idx = torch.arange(math.prod(shape), dtype=torch.long, device=self.device)
        x = mix32(mix32(self.keys ^ c)[:, None] ^ idx[None, :])
        return x.reshape(len(self.keys), *shape)

    def uniform(self, *shape: int) -> torch.Tensor:
        """Floats in [0, 1), 24 random bits each."""
        return (self.bits(*shape) >> 8).float() * (1.0 / (1 << 24))

    def randint(self, high, *shape: int) -> torch.Tensor:
        """Integers in [0, high); ``high`` an int or a (B,) tensor (a bias below 2^-32 * high)."""
        x = self.bits(*shape)
        if torch.is_tensor(high):
            high = high.reshape(-1, *([1] * len(shape)))
        return x % high

    def state_dict(self) -> dict:
        return {"counter": self.counter}

    def load_state_dict(self, state: dict) -> None:
        self.counter = int(state["counter"])
