"""The fine stage: agents that walk the last millimetres on a grid finer than the working one.

The working grid's agents move by whole voxels, so even a perfect one is off by the landmark's offset
inside its voxel (about 0.5 mm for 1 mm voxels), and their training ends within 1 mm of the landmark. The
fine stage keeps the integer-index machinery of :mod:`.env` on a *local* grid: a box around a point,
resampled ``factor`` times finer (cubic splines), on which a fine agent moves by ``fine_scales`` fine voxels
(2 and 1: 1 mm and 0.5 mm steps for ``factor`` 2). One fine agent per landmark (guided by the cavity where
the patient has one) is trained, batched like the others, on boxes around the landmark in the post-op scan
and its augmented copies, from starts within ``fine_box_mm`` of it, with episodes that do not end when it is
near (no terminal distance): it learns to stay on the landmark. It refines the coarse agents' prediction,
and, started at the registration's landmark, it is ``agent_seeded``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .train import AgentConfig, AgentSpec, Trainer


@dataclass(frozen=True)
class FineBox:
    """A local grid: fine voxel ``i`` is at coarse voxel ``origin + i / factor`` (per axis); ``shape`` fine voxels."""

    origin: tuple  # coarse voxel coordinates of fine voxel (0, 0, 0)
    factor: int
    shape: tuple

    def to_fine(self, coarse_vox) -> np.ndarray:
        return (np.asarray(coarse_vox, dtype=float) - np.asarray(self.origin)) * self.factor

    def to_coarse(self, fine_vox) -> np.ndarray:
        return np.asarray(fine_vox, dtype=float) / self.factor + np.asarray(self.origin)

    def affine(self, coarse_affine: np.ndarray) -> np.ndarray:
        """The box's voxel-to-world affine, from the working grid's."""
        a = np.diag([1.0 / self.factor] * 3 + [1.0])
        a[:3, 3] = self.origin
        return np.asarray(coarse_affine, dtype=float) @ a

    def coords(self) -> np.ndarray:
        """The coarse voxel coordinates of every fine voxel, (3, *shape)."""
        axes = [o + np.arange(n) / self.factor for o, n in zip(self.origin, self.shape)]
        return np.stack(np.meshgrid(*axes, indexing="ij"))


def fine_box(centre_vox, cfg: AgentConfig, spacing) -> FineBox:
    """The fine box centred on a (sub-voxel) point of the working grid, the same shape for every centre: the
    fine start box, room to walk (2 mm) and the widest patch (in fine voxels) around it."""
    half = (cfg.fine_box_mm / 2 + 2.0) / np.asarray(spacing, dtype=float) + (cfg.patch // 2) * max(cfg.fine_scales) / cfg.fine_factor
    n = 2 * np.ceil(half * cfg.fine_factor).astype(int) + 1
    origin = np.asarray(centre_vox, dtype=float) - (n - 1) / 2 / cfg.fine_factor
    return FineBox(tuple(float(o) for o in origin), int(cfg.fine_factor), tuple(int(v) for v in n))


def _crop(shape, box: FineBox, margin: int = 4):
    """The slices of the working grid around a box (with a margin for the splines) and the box's coordinates in them."""
    coords = box.coords()
    lo = np.maximum(np.floor(coords.reshape(3, -1).min(1)).astype(int) - margin, 0)
    hi = np.minimum(np.ceil(coords.reshape(3, -1).max(1)).astype(int) + margin + 1, np.asarray(shape))
    return tuple(slice(a, b) for a, b in zip(lo, hi)), coords - lo.reshape(3, 1, 1, 1)


def sample_box(volume: np.ndarray, box: FineBox, order: int = 3) -> np.ndarray:
    """``volume`` (..., X, Y, Z: versions and channels first) resampled on the box (splines of ``order``, from a
    crop around it): (..., *box.shape)."""
    v = np.asarray(volume, dtype=np.float32)
    lead = v.shape[:-3]
    flat = v.reshape(-1, *v.shape[-3:])
    region, coords = _crop(v.shape[-3:], box)
    out = np.stack([ndimage.map_coordinates(ch[region], coords, order=order, mode="nearest") for ch in flat])
    return out.reshape(*lead, *box.shape).astype(np.float32)


def sample_mask(mask: np.ndarray, box: FineBox) -> np.ndarray:
    region, coords = _crop(mask.shape, box)
    return ndimage.map_coordinates(np.asarray(mask[region], np.float32), coords, order=0, mode="constant") > 0.5


def fine_config(cfg: AgentConfig) -> AgentConfig:
    """The training settings of the fine agents: the fine scales, starts anywhere in the fine start box,
    no terminal distance (episodes end after ``max_episode_steps`` or when the agent oscillates at its
    finest scale), ``fine_updates`` updates at most."""
    return dataclasses.replace(cfg, scales=list(cfg.fine_scales), box_mm=cfg.fine_box_mm, near_fraction=0.0,
                               terminal_mm=1e-6, updates=cfg.fine_updates, min_updates=min(cfg.min_updates, cfg.fine_updates),
                               converge_mm=cfg.fine_converge_mm, warmup=min(cfg.warmup, 500), ensemble=1)


def fine_trainer(blocks: dict, cavity: np.ndarray | None, targets: dict, seeds: dict, cfg: AgentConfig, spacing,
                 device="cpu", noise_seed: int = 0, jitter_seed: int = 0) -> tuple[Trainer, dict]:
    """The batched trainer of a patient's fine agents (one per landmark, guided where there is a cavity):
    ``blocks`` {landmark: its training volumes (V, C, X, Y, Z)}, ``targets`` {landmark: voxel position}. Each landmark's box is
    centred up to 2 mm off it per axis, at random (the box's centre says nothing of where the landmark is). Returns (trainer,
    {landmark: its box})."""
    rng = np.random.default_rng(jitter_seed)
    boxes, volumes, masks, specs = {}, [], [], []
    sp = np.asarray(spacing, dtype=float)
    for k, (lm, target) in enumerate(targets.items()):
        jitter = rng.uniform(-2.0, 2.0, 3) / sp
        box = boxes[lm] = fine_box(np.asarray(target, dtype=float) + jitter, cfg, sp)
        volumes.append(sample_box(blocks[lm], box))
        v = len(blocks[lm])
        if cavity is not None:
            masks.append(np.repeat(sample_mask(cavity, box)[None], v, 0))
        specs.append(AgentSpec(tuple(box.to_fine(target)), seeds[lm], cavity is not None, tuple(range(k * v, (k + 1) * v))))
    fcfg = fine_config(cfg)
    mask = np.concatenate(masks) if masks else None
    trainer = Trainer(np.concatenate(volumes), specs, fcfg, device, mask=mask, spacing=sp / cfg.fine_factor,
                      noise_seed=noise_seed)
    return trainer, boxes


def fine_starts(box: FineBox, n: int, box_mm: float, spacing, seed: int) -> np.ndarray:
    """``n`` fixed fine-grid starts: the box's centre first, the others uniform within ``box_mm`` of it."""
    rng = np.random.default_rng([seed, 31])
    centre = (np.asarray(box.shape) - 1) / 2
    half = box_mm / 2 / (np.asarray(spacing, dtype=float) / box.factor)
    offsets = rng.uniform(-1, 1, (n, 3)) * half
    offsets[0] = 0
    return np.rint(centre + offsets).astype(int)
