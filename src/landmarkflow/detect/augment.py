"""Training volumes of the post-op scan: augmented copies (cavity filled, smoothing, bias field, local
deformations about the landmark) shared by the agents and PIN."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..imaging.intensity import random_monotone_curve


def warp_about(volume: np.ndarray, target_vox, rng: np.random.Generator, rotate_deg: float, scale: float,
               elastic_mm: float, spacing=(1.0, 1.0, 1.0), smooth_mm: float = 10.0) -> np.ndarray:
    """``volume`` (C, X, Y, Z) under a random local deformation that keeps ``target_vox`` in place.

    Backward map (mm about the target ``t``): ``x -> t + A (x - t) + e(x) - e(t)`` with ``A`` a rotation
    (up to ``rotate_deg`` about a random axis) times a scaling and shear of up to ``scale`` per entry, and
    ``e`` a smooth random field (Gaussian of ``smooth_mm``) of ``elastic_mm`` standard deviation. The
    anatomy around the landmark bends as between two scans, while the landmark stays where the agent is
    rewarded for finding it. Masks are not warped: the guided agent's cavity penalty keeps the
    unwarped cavity, a few mm off in a warped copy.
    """
    sp = np.asarray(spacing, dtype=float)
    t = np.asarray(target_vox, dtype=float) * sp
    shape = volume.shape[1:]
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(-rotate_deg, rotate_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    a = rot @ (np.eye(3) + rng.uniform(-scale, scale, (3, 3)))
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) * np.float32(d) for s, d in zip(shape, sp)],
                                indexing="ij"))
    src = np.einsum("ij,j...->i...", a.astype(np.float32), grid - t.astype(np.float32)[:, None, None, None])
    src += t.astype(np.float32)[:, None, None, None]
    if elastic_mm > 0:
        step = max(1, int(round(smooth_mm / 2 / sp.min())))
        coarse = [max(2, -(-s // step) + 1) for s in shape]
        at = tuple(int(np.clip(round(v), 0, s - 1)) for v, s in zip(np.asarray(target_vox, dtype=float), shape))
        for i in range(3):
            e = ndimage.gaussian_filter(rng.standard_normal(coarse), smooth_mm / (step * sp.min()), mode="wrap")
            e = ndimage.zoom(e / (e.std() + 1e-9) * elastic_mm, [s / c for s, c in zip(shape, coarse)], order=1)[
                : shape[0], : shape[1], : shape[2]].astype(np.float32)
            src[i] += e - e[at]  # zero displacement at the target
    src /= sp.astype(np.float32)[:, None, None, None]
    return np.stack([ndimage.map_coordinates(ch, src, order=1, mode="nearest") for ch in volume]).astype(np.float32)


def augmented_versions(image: np.ndarray, brain: np.ndarray, cavity: np.ndarray | None, n: int, rng: np.random.Generator,
                       fill_cavity: bool = True, target_vox=None,
                       warp_deg: float = 0.0, warp_scale: float = 0.0, warp_mm: float = 0.0,
                       spacing=(1.0, 1.0, 1.0), contrast: float = 0.0, blur_mm: float = 0.0) -> np.ndarray:
    """``n`` training volumes (n, C, X, Y, Z): the image and ``n - 1`` copies with the cavity filled with
    tissue-like texture (so that the agent cannot rely on it), another smoothing and a bias field, and, as
    a follow-up from another scanner would differ, a random monotone intensity curve per channel of strength
    ``contrast`` and an extra blur of up to ``blur_mm`` (sigma) along one random axis (another slice
    thickness); when ``target_vox`` and a warp are given, a random local deformation that keeps the target in
    place (:func:`warp_about`)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[None]
    out = [image]
    shape = image.shape[1:]
    brain_vals = image[:, brain] if brain is not None and brain.any() else image.reshape(image.shape[0], -1)
    for _ in range(n - 1):
        v = image.copy()
        if fill_cavity and cavity is not None and cavity.any():
            grown = ndimage.binary_dilation(cavity, iterations=1)
            noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), rng.uniform(1.0, 3.0))
            noise /= noise.std() + 1e-6
            for c in range(v.shape[0]):
                mu = np.percentile(brain_vals[c], rng.uniform(30, 70))
                sd = brain_vals[c].std() * rng.uniform(0.3, 0.8)
                v[c][grown] = (mu + sd * noise)[grown]
        sigma = rng.uniform(0.0, 1.2)
        if sigma > 0.2:
            v = np.stack([ndimage.gaussian_filter(ch, sigma) for ch in v])
        axes = [np.linspace(-1, 1, s, dtype=np.float32) for s in shape]
        x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
        c = rng.uniform(-0.1, 0.1, 3)
        v = v * (1 + c[0] * x + c[1] * y + c[2] * z)[None]
        if contrast > 0:
            v = np.stack([random_monotone_curve(ch, rng, contrast) for ch in v])
        if blur_mm > 0:
            sigma_axis = np.zeros(3)
            sigma_axis[rng.integers(3)] = rng.uniform(0, blur_mm)
            v = np.stack([ndimage.gaussian_filter(ch, sigma_axis / np.asarray(spacing, dtype=float)) for ch in v])
        if target_vox is not None and (warp_deg > 0 or warp_scale > 0 or warp_mm > 0):
            v = warp_about(v, target_vox, rng, warp_deg, warp_scale, warp_mm, spacing)
        out.append(v.astype(np.float32))
    return np.stack(out)
