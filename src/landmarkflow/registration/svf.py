"""A second, independent deformable registration: bidirectional stationary velocity fields with
forward-backward consistency masking (in the spirit of DIRAC, Mok & Chung, MICCAI 2022), solved per
patient by instance optimisation in PyTorch (no trained weights).

Method. Two velocity fields are optimised independently (batched in one tensor): ``v_f`` registers the
moving (post-op) image onto the fixed (pre-op) one, ``v_b`` the fixed onto the moving. Each is a
stationary velocity field whose displacement ``u = exp(v) - id`` comes from scaling and squaring, so the
transform is diffeomorphic and its exact inverse is ``exp(-v)``. ``v`` is a sum of the velocity carried
over from the coarser level and a Gaussian-smoothed parameter (the smoothing acts as a preconditioner:
Adam's steps move smooth patterns, not single voxels). Each direction minimises

    - mean over the cost mask of LNCC (local normalised cross-correlation, box windows, channels averaged)
    + smooth_weight * diffusion(v)          (mean squared spatial gradient of v, in mm / mm)

on an image pyramid (``levels``, coarse to fine). From ``mask_from_level`` on, the forward-backward
consistency ``e_f(x) = |u_f(x) + u_b(x + u_f(x))|`` (mm, smoothed by two 5^3 average pools as in DIRAC)
is recomputed every ``mask_every`` iterations; a fixed-grid voxel whose ``e_f`` exceeds the mean of
``e_f`` over the fixed mask by more than ``consistency_mm`` has no correspondence and is left out of the
forward similarity (and likewise ``e_b`` on the moving grid for the backward one). Where one image has
tissue the other lacks (a resection cavity, a new lesion), the two directions cannot agree - the one
whose target has the tissue shrinks the other image's cavity, the other has nothing to match there - so
the final map of ``e_f`` is the registration's estimate of missing correspondence. It is not a clean
segmentation: it is blurred (by the two means, and the fields are smooth) and it also marks regions where
the registration is poor (on the demo patients 1-4 % of the brain farther than 10 mm from the lesion,
without masks), and a small lesion in strongly regularised fields may stay below ``consistency_mm``.

Conventions. Both images lie on ONE voxel grid (the preprocessing resamples the rigidly aligned post-op
scan onto the pre-op 1 mm RAS grid). Arrays are (C, X, Y, Z) indexed [i, j, k]; displacements are
(3, X, Y, Z) in voxels of that grid, components (i, j, k); points are continuous voxel coordinates
(n, 3). The forward transform samples the moving image at ``x + u_f(x)`` for a fixed-grid voxel ``x``
(the moving image warped onto the fixed one); the backward one samples the fixed image at
``y + u_b(y)`` for a moving-grid voxel ``y``. A post-op landmark ``q`` lands in the pre-op image at
``phi_f^-1(q) = q + u_inv(q)`` and at ``phi_b(q) = q + u_b(q)``: :meth:`SvfResult.map_points` returns
their mean and their distance (mm), a per-point consistency.

Grids. A level with downsampling factor ``f`` has ``round((n - 1) / f) + 1`` voxels along an axis of
``n``, with the corner voxels of both grids at the same place (``align_corners=True`` throughout), so
that a displacement changes grid by interpolation and a per-axis factor ``(n - 1) / (n_l - 1)``. The
velocity lives on the grid of factor ``max(f, velocity_factor)``: scaling and squaring (seven
compositions, each a ``grid_sample`` whose backward pass is the most expensive operation on a CPU)
then costs little, and the displacement is interpolated up to the image level. The outputs are on
the full grid.

Determinism and devices. The same code runs on any torch device (``device``). On the CPU every
operation used is deterministic for a given thread count (no atomics; matrix products in MKL on
PyTorch's aligned buffers), so the same inputs give bit-identical results; on CUDA, ``grid_sample``'s
backward pass accumulates with atomics and results may differ in the last bits between runs. On a CPU
shared with other work, small levels run much faster with one torch thread than with two (each of the
thousands of small operations per iteration waits for the slower thread): the caller sets the threads.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from dataclasses import fields as dataclasses_fields

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from scipy import ndimage

from ..cohort.preproc_folder import PreprocFolder
from ..core import layout
from ..core.config import check_svf, schema_field
from ..core.device import setup_device, write_device
from ..core.files import atomic_dir, write_table
from ..imaging import spatial
from ..imaging.image import Image, write_image
from ..io.landmarks import landmarks_frame, points_of, write_landmarks
from .folding import jacobian_row, nonpositive_share

log = logging.getLogger(__name__)

#: added to the LNCC denominator (images are standardised per channel): keeps flat regions (background,
#: a cavity) at a correlation of ~0 with small, not exploding, gradients
_EPS = 1e-3


@dataclass(frozen=True)
class SvfSettings:
    """Settings of :func:`register` (config key ``svf``; defaults from the config schema). The defaults were
    chosen on the project's three demo patients (161 x 191 x 175 voxels, 1 mm, T1ce + FLAIR; 4 landmarks each): about 0.7 mm mean landmark error (ANTs
    SyN "quick": 0.83 mm, no registration: 3.8 mm), the pre-op tumour inside the no-correspondence map
    without any mask given, no folding, and about a minute on one or two CPU cores."""

    #: downsampling factors of the image pyramid, coarse to fine. (4, 2) evaluates the finest similarity at
    #: 2 mm: a full-resolution level costs ~5-10 s per iteration on two CPU cores; on a GPU (4, 2, 1) is
    #: affordable (but see ``mask_from_level``: it also weakens the consistency map)
    levels: tuple = schema_field("svf", "levels")
    #: Adam iterations per level (120 instead of 100 at the coarse level changed nothing that mattered)
    iterations: tuple = schema_field("svf", "iterations")
    #: Adam learning rate: about the largest change of the velocity per iteration, in voxels of the level's
    #: velocity grid (0.1 = 0.4 mm at a 4 mm grid)
    lr: float = schema_field("svf", "lr")
    #: LNCC window (voxels, at each level)
    window: int = schema_field("svf", "window")
    #: weight of the diffusion regulariser (mean squared gradient of v, mm / mm) against the LNCC (in
    #: [-1, 0]). The trade-off: on the demo patients 0.05 and 0.1 gave the best landmarks (0.1 slightly
    #: better with lesion masks, 0.05 without); 0.3 keeps the fields so smooth that, without masks, the
    #: tumour no longer stands out in the consistency map (a share of 0.1-0.4 of it instead of 0.85-1)
    smooth_weight: float = schema_field("svf", "smooth_weight")
    #: Gaussian smoothing of the velocity parameter (voxels of the velocity grid); 0 = none
    velocity_sigma: float = schema_field("svf", "velocity_sigma")
    #: the velocity lives on the grid of downsampling max(level factor, velocity_factor): at 4 (4 mm on a
    #: 1 mm scan) scaling and squaring is ~8x cheaper than at 2, and brain shift is smooth at that scale
    velocity_factor: int = schema_field("svf", "velocity_factor")
    #: scaling-and-squaring steps (the velocity is divided by 2**steps, then composed ``steps`` times)
    steps: int = schema_field("svf", "steps")
    #: tau: a voxel has no correspondence where its consistency error exceeds the mean error (over its
    #: image's mask, or everywhere) by more than this (mm)
    consistency_mm: float = schema_field("svf", "consistency_mm")
    #: index into ``levels`` of the first level whose similarity leaves out the voxels of no
    #: correspondence (the levels before are the warm-up); len(levels) or more: never. Leaving them out
    #: also removes what drives the two directions apart, so every further level or iteration with the mask
    #: lowers the consistency map's contrast somewhat
    mask_from_level: int = schema_field("svf", "mask_from_level")
    #: the consistency mask is recomputed every this many iterations (at a level's first iteration from
    #: the coarser level's fields; on the first level only after a warm-up of this many iterations)
    mask_every: int = schema_field("svf", "mask_every")
    #: torch's global seed, set at the start (nothing is drawn at random: the velocities start at zero)
    seed: int = 0

    def __post_init__(self):
        check_svf(self.levels, self.iterations, self.window)
        if any(int(f) < 1 for f in self.levels) or int(self.velocity_factor) < 1:
            raise ValueError("downsampling factors must be >= 1")


@dataclass
class SvfResult:
    """The two transforms, the inverse of the forward one, the consistency maps and the Jacobian, all on the
    full grid (see the module docstring for the conventions)."""

    forward: np.ndarray  #: (3, X, Y, Z) u_f, voxels: moving sampled at x + u_f(x) lies on the fixed grid
    backward: np.ndarray  #: (3, X, Y, Z) u_b, voxels: fixed sampled at y + u_b(y) lies on the moving grid
    inverse: np.ndarray  #: (3, X, Y, Z) displacement of exp(-v_f), the inverse of the forward transform
    consistency_mm: np.ndarray  #: (X, Y, Z) e_f on the fixed grid, mm, smoothed
    no_correspondence: np.ndarray  #: (X, Y, Z) bool, fixed grid: e_f above its mean + tau
    no_correspondence_moving: np.ndarray  #: (X, Y, Z) bool, moving grid: e_b above its mean + tau
    jacobian: np.ndarray  #: (X, Y, Z) determinant of the forward transform id + u_f (central differences)
    seconds: float  #: wall time of :func:`register`
    spacing: np.ndarray  #: (3,) voxel size, mm
    consistency_moving_mm: np.ndarray | None = None  #: (X, Y, Z) e_b on the moving grid, mm, smoothed

    def map_points(self, points_moving_vox) -> tuple[np.ndarray, np.ndarray]:
        """Moving-grid points (n, 3, continuous voxels) in the fixed grid: the mean of ``phi_f^-1(q)`` and
        ``phi_b(q)`` (n, 3 voxels), and the distance between the two estimates (n,) in mm."""
        q = np.atleast_2d(np.asarray(points_moving_vox, dtype=float))
        p1 = q + _interpolate(self.inverse, q)
        p2 = q + _interpolate(self.backward, q)
        return (p1 + p2) / 2, np.linalg.norm((p1 - p2) * self.spacing, axis=1)

    def warp(self, moving: np.ndarray) -> np.ndarray:
        """A (C, X, Y, Z) or (X, Y, Z) image on the moving grid warped onto the fixed grid (trilinear, border
        values outside the grid), on the CPU."""
        moving = np.asarray(moving, dtype=np.float32)
        image = torch.as_tensor(_as_volume(moving, "moving"))[None]
        with torch.no_grad():
            out = _sample(image, torch.as_tensor(self.forward)[None])[0].numpy()
        return out[0] if moving.ndim == 3 else out


def _interpolate(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A (3, X, Y, Z) field at (n, 3) continuous voxels, trilinear; points outside the grid take the value
    at its border (like the registration's own sampling)."""
    from scipy import ndimage

    pts = np.clip(points, 0, np.asarray(field.shape[1:]) - 1).T
    return np.stack([ndimage.map_coordinates(c, pts, order=1) for c in field], axis=1)


# ----------------------------------------------------------------------------- grids and sampling
def _level_shape(shape, factor: int) -> tuple[int, ...]:
    """The grid of a downsampling factor: corner voxels kept, ~``factor`` voxels per voxel."""
    return tuple(max(2, int(round((n - 1) / factor)) + 1) for n in shape)


def _resize(x: torch.Tensor, shape) -> torch.Tensor:
    """(B, C, ...) resampled to ``shape`` (trilinear; corners aligned)."""
    if tuple(x.shape[2:]) == tuple(shape):
        return x
    return F.interpolate(x, size=tuple(shape), mode="trilinear", align_corners=True)


def _resize_field(u: torch.Tensor, shape) -> torch.Tensor:
    """A (B, 3, ...) displacement in voxels moved to the grid ``shape``: interpolated, and each component
    rescaled to the new grid's voxels."""
    if tuple(u.shape[2:]) == tuple(shape):
        return u
    ratio = torch.tensor([(m - 1) / (n - 1) for m, n in zip(shape, u.shape[2:])], dtype=u.dtype, device=u.device)
    return _resize(u, shape) * ratio.view(1, 3, 1, 1, 1)


def _sample(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, grid) sampled at ``id + u`` (``u`` (B, 3, grid), voxels of the same grid), trilinear,
    border values outside. grid_sample wants normalised coordinates in the order (k, j, i)."""
    shape = u.shape[2:]
    comps = []
    for a in (2, 1, 0):
        view = [1, 1, 1]
        view[a] = shape[a]
        axis = torch.linspace(-1.0, 1.0, shape[a], dtype=u.dtype, device=u.device).view(1, *view)
        comps.append(axis + u[:, a] * (2.0 / (shape[a] - 1)))
    return F.grid_sample(x, torch.stack(comps, -1), mode="bilinear", padding_mode="border", align_corners=True)


def _exp(v: torch.Tensor, steps: int) -> torch.Tensor:
    """Displacement of the flow of the stationary velocity ``v`` at time 1 (scaling and squaring)."""
    u = v / (2**steps)
    for _ in range(steps):
        u = u + _sample(u, u)
    return u


class _Filter:
    """A separable filter on one grid, normalised over the part of the window inside the grid (borders are
    not darkened, as with zero padding). Each axis is a product with a banded (n, n) matrix, rows summing
    to 1: on a CPU a matrix product is ~5x faster than a depthwise ``conv3d`` with a 7-tap kernel, and its
    backward pass is a matrix product too."""

    def __init__(self, kernel: np.ndarray, shape, device, dtype=torch.float32):
        self.mats = [self._band(np.asarray(kernel, dtype=float), int(n)).to(device=device, dtype=dtype) for n in shape]

    @staticmethod
    def _band(kernel: np.ndarray, n: int) -> torch.Tensor:
        r = len(kernel) // 2
        offset = np.arange(n)[None, :] - np.arange(n)[:, None]  # column - row
        band = np.where(np.abs(offset) <= r, kernel[np.clip(offset + r, 0, len(kernel) - 1)], 0.0)
        return torch.as_tensor(band / band.sum(1, keepdims=True))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, X, Y, Z) filtered along k, j and i."""
        b, c, nx, ny, nz = x.shape
        y = torch.matmul(x, self.mats[2].T)
        y = torch.matmul(self.mats[1], y)
        return torch.matmul(self.mats[0], y.reshape(b * c, nx, ny * nz)).reshape(x.shape)


def _gaussian(sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(3 * sigma)))
    t = np.arange(-r, r + 1, dtype=float)
    return np.exp(-0.5 * (t / sigma) ** 2)


def _downsample(x: torch.Tensor, shape) -> torch.Tensor:
    """(B, C, ...) on the grid ``shape`` after an anti-aliasing Gaussian (sigma half the factor)."""
    factor = max((n - 1) / (m - 1) for n, m in zip(x.shape[2:], shape))
    if factor > 1.01:
        x = _Filter(_gaussian(factor / 2), x.shape[2:], x.device, x.dtype)(x)
    return _resize(x, shape)


# ----------------------------------------------------------------------------- one pyramid level
@dataclass
class _Level:
    """The images of one pyramid level, batched by direction: index 0 is the forward registration
    (target fixed, source moving), index 1 the backward one (target moving, source fixed)."""

    factor: int
    shape: tuple  # the image grid of the level
    vshape: tuple  # the velocity grid
    spacing: torch.Tensor  # (3,) mm per voxel of the image grid
    vspacing: torch.Tensor  # (3,) mm per voxel of the velocity grid
    target: torch.Tensor  # (2, C, shape)
    source: torch.Tensor  # (2, C, shape)
    weights: torch.Tensor  # (2, 1, shape) the cost masks (soft, in [0, 1])
    box: _Filter  # the LNCC window
    target_mean: torch.Tensor  # (2, C, shape) local mean of the target
    target_var: torch.Tensor  # (2, C, shape) local variance of the target


def _grid_spacing(full_shape, shape, spacing: torch.Tensor) -> torch.Tensor:
    ratio = torch.tensor([(n - 1) / (m - 1) for n, m in zip(full_shape, shape)], dtype=spacing.dtype)
    return spacing * ratio.to(spacing.device)


def _make_level(images: torch.Tensor, masks: torch.Tensor, spacing: torch.Tensor, factor: int,
                settings: SvfSettings) -> _Level:
    """Level ``factor`` of ``images`` (2, C, full grid: fixed, moving) and ``masks`` (2, 1, full grid)."""
    full = tuple(images.shape[2:])
    shape = _level_shape(full, factor)
    vshape = _level_shape(full, max(factor, settings.velocity_factor))
    small = _downsample(images, shape)
    weights = _downsample(masks, shape).clamp(0, 1)
    box = _Filter(np.ones(settings.window), shape, images.device, images.dtype)
    stats = box(torch.cat([small, small * small], 1))
    c = small.shape[1]
    mean, var = stats[:, :c], (stats[:, c:] - stats[:, :c] ** 2).clamp_min(0)
    return _Level(factor, shape, vshape, _grid_spacing(full, shape, spacing), _grid_spacing(full, vshape, spacing),
                  small, small.flip(0), weights, box, mean, var)


def _lncc(level: _Level, warped: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B,) weighted mean over the grid of the squared local correlation between the target and ``warped``
    (B, C, shape), channels averaged: 1 for a perfect local (affine) match, ~0 where either is flat."""
    c = warped.shape[1]
    stats = level.box(torch.cat([warped, warped * warped, level.target * warped], 1))
    mean = stats[:, :c]
    var = (stats[:, c:2 * c] - mean**2).clamp_min(0)
    cov = stats[:, 2 * c:] - level.target_mean * mean
    local = (cov**2 / (level.target_var * var + _EPS)).mean(1, keepdim=True)
    return (local * weights).sum((1, 2, 3, 4)) / weights.sum((1, 2, 3, 4)).clamp_min(1e-6)


def _diffusion(v: torch.Tensor, spacing: torch.Tensor) -> torch.Tensor:
    """(B,) mean over the grid of the squared spatial derivatives of ``v`` (B, 3, grid), summed over the
    nine derivatives, in physical units (mm of displacement per mm), so that levels and anisotropic
    grids are weighted alike."""
    total = v.new_zeros(v.shape[0])
    for b in range(3):
        d = torch.diff(v, dim=2 + b) * (spacing / spacing[b]).view(1, 3, 1, 1, 1)
        total = total + (d**2).sum(1).mean((1, 2, 3))
    return total


# ----------------------------------------------------------------------------- consistency
def _consistency(u: torch.Tensor, spacing: torch.Tensor) -> torch.Tensor:
    """(2, 1, grid) forward-backward errors in mm, smoothed by two 5^3 means: index 0 is
    ``e_f(x) = |u_f(x) + u_b(x + u_f(x))|`` on the fixed grid, index 1 ``e_b`` on the moving grid, from
    ``u`` (2, 3, grid) = (u_f, u_b)."""
    err = ((u + _sample(u.flip(0), u)) * spacing.view(1, 3, 1, 1, 1)).norm(dim=1, keepdim=True)
    mean5 = _Filter(np.ones(5), u.shape[2:], u.device, u.dtype)
    return mean5(mean5(err))


def _no_correspondence(err: torch.Tensor, masks: torch.Tensor, tau: float) -> torch.Tensor:
    """(2, 1, grid) bool: the error exceeds its mean over the mask (per direction) by more than ``tau``."""
    mean = (err * masks).sum((1, 2, 3, 4)) / masks.sum((1, 2, 3, 4)).clamp_min(1e-6)
    return err > (mean + tau).view(-1, 1, 1, 1, 1)


# ----------------------------------------------------------------------------- optimisation
def _velocity(base: torch.Tensor, theta: torch.Tensor, smooth: _Filter | None) -> torch.Tensor:
    return base + (smooth(theta) if smooth is not None else theta)


def _masked_weights(level: _Level, v: torch.Tensor, settings: SvfSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """The cost masks without the voxels of no correspondence, and their share of the mask (2,)."""
    with torch.no_grad():
        u = _resize_field(_exp(v, settings.steps), level.shape)
        nc = _no_correspondence(_consistency(u, level.spacing), level.weights, settings.consistency_mm)
        share = (nc * level.weights).sum((1, 2, 3, 4)) / level.weights.sum((1, 2, 3, 4)).clamp_min(1e-6)
        return level.weights * (~nc), share


def _optimise(level: _Level, base: torch.Tensor, settings: SvfSettings, index: int) -> torch.Tensor:
    """Adam on the velocity update of one level (both directions at once: their losses are summed, and
    Adam's steps are per element, so the two optimisations stay independent); returns (2, 3, vshape)."""
    t0 = time.time()
    theta = torch.zeros_like(base, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=settings.lr)
    sigma = settings.velocity_sigma
    smooth = _Filter(_gaussian(sigma), level.vshape, base.device, base.dtype) if sigma > 0 else None
    weights, share = level.weights, None
    masking = index >= settings.mask_from_level
    n = settings.iterations[index]
    for it in range(n):
        if masking and it % settings.mask_every == 0 and (index > 0 or it > 0):
            weights, share = _masked_weights(level, _velocity(base, theta.detach(), smooth), settings)
        opt.zero_grad(set_to_none=True)
        v = _velocity(base, theta, smooth)
        u = _resize_field(_exp(v, settings.steps), level.shape)
        sim = _lncc(level, _sample(level.source, u), weights)
        reg = _diffusion(v, level.vspacing)
        loss = -sim + settings.smooth_weight * reg
        loss.sum().backward()
        opt.step()
        if it % 20 == 0 or it == n - 1:
            log.debug("SVF factor %d, iteration %d/%d: LNCC %s, diffusion %s", level.factor, it + 1, n,
                      _pair(sim), _pair(reg))
    log.info("SVF level %d/%d (factor %d, images %s, velocity %s): %d iterations, LNCC f/b %s, diffusion %s, "
             "left out %s, %.1f s", index + 1, len(settings.levels), level.factor, "x".join(map(str, level.shape)),
             "x".join(map(str, level.vshape)), n, _pair(sim) if n else "-", _pair(reg) if n else "-",
             _pair(share) if share is not None else "-", time.time() - t0)
    return _velocity(base, theta.detach(), smooth)


def _pair(x: torch.Tensor) -> str:
    return "/".join(f"{float(a):.4f}" for a in x.detach())


# ----------------------------------------------------------------------------- the registration
def _as_volume(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    x = x[None] if x.ndim == 3 else x
    if x.ndim != 4:
        raise ValueError(f"{name} must be (C, X, Y, Z) or (X, Y, Z), got shape {x.shape}")
    return x


def _as_mask(m, shape, device) -> torch.Tensor:
    if m is None:
        return torch.ones((1, *shape), dtype=torch.float32, device=device)
    m = np.asarray(m, dtype=bool)
    if m.shape != tuple(shape):
        raise ValueError(f"mask of shape {m.shape} on images of shape {tuple(shape)}")
    if not m.any():
        raise ValueError("empty mask")
    return torch.as_tensor(m, dtype=torch.float32, device=device)[None]


def _standardise(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(C, grid) with zero mean and unit standard deviation inside ``mask`` (1, grid), per channel: the
    LNCC's epsilon then means the same for every scan."""
    inside = mask[0] > 0.5
    out = []
    for c in x:
        vals = c[inside]
        out.append((c - vals.mean()) / vals.std().clamp_min(1e-6))
    return torch.stack(out)


def register(fixed, moving, spacing, fixed_mask=None, moving_mask=None, settings: SvfSettings = SvfSettings(),
             device="cpu") -> SvfResult:
    """Bidirectional SVF registration of ``moving`` and ``fixed`` (C, X, Y, Z) on one grid of voxel size
    ``spacing`` (3,) mm. ``fixed_mask``/``moving_mask`` (X, Y, Z) bool: where each image's similarity is
    evaluated (the brain minus the lesion; everywhere when None), also the voxels over which the mean
    consistency is taken. See the module docstring for the method and the conventions."""
    t0 = time.time()
    torch.manual_seed(settings.seed)
    device = torch.device(device)
    fixed, moving = _as_volume(fixed, "fixed"), _as_volume(moving, "moving")
    if fixed.shape != moving.shape:
        raise ValueError(f"fixed {fixed.shape} and moving {moving.shape} must lie on one grid with the same channels")
    spacing = np.asarray(spacing, dtype=float).reshape(3)
    shape = fixed.shape[1:]
    masks = torch.stack([_as_mask(fixed_mask, shape, device), _as_mask(moving_mask, shape, device)])
    images = torch.stack([_standardise(torch.as_tensor(x, device=device), m)
                          for x, m in zip((fixed, moving), masks)])
    spacing_t = torch.as_tensor(spacing, dtype=torch.float32, device=device)
    v = None
    for index, factor in enumerate(settings.levels):
        level = _make_level(images, masks, spacing_t, int(factor), settings)
        base = torch.zeros((2, 3, *level.vshape), device=device) if v is None else _resize_field(v, level.vshape)
        v = _optimise(level, base, settings, index)
        del level
    del images
    return _result(v, masks, spacing, settings, t0)


def _result(v: torch.Tensor, masks: torch.Tensor, spacing: np.ndarray, settings: SvfSettings, t0: float) -> SvfResult:
    """The full-grid outputs of the final velocities (2, 3, velocity grid)."""
    shape = tuple(masks.shape[2:])
    with torch.no_grad():
        u = _resize_field(_exp(v, settings.steps), shape)
        inverse = _resize_field(_exp(-v[:1], settings.steps), shape)
        err = _consistency(u, torch.as_tensor(spacing, dtype=torch.float32, device=u.device))
        nc = _no_correspondence(err, masks, settings.consistency_mm)
        jac = _jacobian(u[0])
        out = [t.cpu().numpy() for t in (u[0], u[1], inverse[0], err[0, 0], nc[0, 0], nc[1, 0], jac)]
    res = SvfResult(*out, seconds=time.time() - t0, spacing=spacing, consistency_moving_mm=err[1, 0].cpu().numpy())
    log.info("SVF registration: %.1f s; consistency mean %.2f mm, no correspondence %.2f%% (fixed), "
             "%.2f%% (moving); non-positive Jacobians %.4f%%", res.seconds, float(res.consistency_mm.mean()),
             100 * res.no_correspondence.mean(), 100 * res.no_correspondence_moving.mean(),
             100 * nonpositive_share(res.jacobian))
    return res


def _jacobian(u: torch.Tensor) -> torch.Tensor:
    """Determinant of the Jacobian of ``id + u`` (``u`` (3, grid), voxels): central differences inside,
    one-sided at the border. Unitless, and the same in voxels as in mm (the spacing cancels)."""
    g = [torch.gradient(u[a], dim=(0, 1, 2)) for a in range(3)]
    j = [[g[a][b] + (1.0 if a == b else 0.0) for b in range(3)] for a in range(3)]
    return (j[0][0] * (j[1][1] * j[2][2] - j[1][2] * j[2][1])
            - j[0][1] * (j[1][0] * j[2][2] - j[1][2] * j[2][0])
            + j[0][2] * (j[1][0] * j[2][1] - j[1][1] * j[2][0]))


# ----------------------------------------------------------------------------- one patient
#: the files of a patient's svf folder besides the Jacobian table
SVF_FILES = {"jacobian": layout.jacobian_image_name("svf"), "consistency": layout.SVF_CONSISTENCY["pre"],
             "consistency_post": layout.SVF_CONSISTENCY["post"],
             "no_correspondence_pre": "no_correspondence_pre.nii.gz",
             "no_correspondence_post": "no_correspondence_post.nii.gz", "warped": "svf_warped_post.nii.gz"}


def run_svf(preproc_dir, outdir, out_landmarks, settings: dict, seed: int = 0, device: str = "auto",
            threads: int | None = None) -> dict:
    """The second registration of a preprocessed patient: its post-op scan (rigidly aligned) onto its pre-op
    scan with :func:`register`, both directions, the similarity left out of the lesions when the patient has
    masks. Writes ``out_landmarks`` (``landmark,x,y,z,consistency_mm``: the post-op landmarks mapped into the
    pre-op world, and how far the two directions' estimates are apart) and, whole or not at all, ``outdir``:
    the Jacobian determinant of the forward transform, the consistency maps of both grids (mm) and the no-correspondence
    masks of both grids, the warped post-op reference image, and the Jacobian table (share of non-positive
    determinants in the brain, smallest determinant, seconds). ``settings``: the config's ``svf`` section."""
    requested = settings.get("device", "auto") if device == "auto" else device
    dev = setup_device(requested, threads)
    folder = PreprocFolder(preproc_dir)
    mods = list(settings.get("modalities") or []) or folder.modalities
    mods = folder.resolve_modalities(mods, "svf.modalities")
    fixed, affine = folder.stack("pre", mods)
    moving, _ = folder.stack("post", mods)
    masks = {}
    for tp in ("pre", "post"):
        brain, lesion = folder.mask(tp, "brain"), folder.lesion(tp)
        if lesion is not None:
            brain = brain & ~ndimage.binary_dilation(lesion, iterations=3)
        masks[tp] = brain
    keys = {f.name for f in dataclasses_fields(SvfSettings)} - {"seed"}
    cfg = SvfSettings(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in settings.items() if k in keys}, seed=int(seed))
    res = register(fixed, moving, spatial.spacing_of(affine), masks["pre"], masks["post"], cfg, dev)
    lm = folder.landmarks("post")
    vox, consistency = res.map_points(spatial.world_to_voxel(points_of(lm), affine))
    brain = folder.mask("pre", "brain")
    with atomic_dir(outdir) as tmp:
        for key, data, dtype in (("jacobian", res.jacobian, np.float32), ("consistency", res.consistency_mm, np.float32),
                                 ("consistency_post", res.consistency_moving_mm, np.float32),
                                 ("no_correspondence_pre", res.no_correspondence, np.uint8),
                                 ("no_correspondence_post", res.no_correspondence_moving, np.uint8),
                                 ("warped", res.warp(moving)[0], np.float32)):
            write_image(Image(np.asarray(data).astype(dtype), affine), tmp / SVF_FILES[key])
        write_table(pd.DataFrame([jacobian_row("svf", res.jacobian, brain, res.seconds)]),
                    layout.jacobian_table(tmp), float_format="%.6f")
        write_device(tmp, dev, requested)
    write_landmarks(landmarks_frame(lm["landmark"], spatial.voxel_to_world(vox, affine), consistency_mm=consistency),
                    out_landmarks)
    log.info("%s: svf registration in %.1f s on %s; landmark consistency %s mm", folder.patient, res.seconds, dev,
             np.round(consistency, 2).tolist())
    return {"seconds": res.seconds, "consistency_mm": consistency}
