"""Devices and seeds of the jobs that run PyTorch (agents, PIN, the second registration); torch is imported
when a device is asked for, not with this module."""

from __future__ import annotations

import logging
import os
import zlib

log = logging.getLogger(__name__)


def pick_device(requested: str = "auto"):
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def setup_device(device: str, threads: int | None):
    """Torch threads and device of a job; logs what the job sees (a SLURM GPU job sets CUDA_VISIBLE_DEVICES)."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    dev = pick_device(device)
    log.info("device %s (requested %s, CUDA_VISIBLE_DEVICES=%s, cuda available: %s), %d torch threads", dev, device,
             os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), torch.cuda.is_available(), torch.get_num_threads())
    return dev


def seed_for(seed: int, *keys) -> int:
    """A 31-bit seed from the master seed and identifiers (patient, landmark, variant)."""
    return (int(seed) * 1_000_003 + zlib.crc32("/".join(map(str, keys)).encode())) % (2**31 - 1)
