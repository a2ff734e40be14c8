"""Intensities: normalisation inside the brain."""

from __future__ import annotations

import numpy as np

from ..core.errors import InputError


def normalise(data: np.ndarray, mask: np.ndarray, method: str) -> np.ndarray:
    """Intensity normalisation inside the brain; zero outside it."""
    vals = data[mask]
    if vals.size == 0:
        raise InputError("empty brain mask: cannot normalise intensities")
    if method == "percentile":
        lo, hi = np.percentile(vals, [1, 99])
        out = (data - lo) / max(hi - lo, 1e-6)
    elif method == "zscore":
        out = (data - vals.mean()) / max(vals.std(), 1e-6)
    else:
        out = data.copy()
    return np.where(mask, out, 0).astype(np.float32)


def match_histogram(source: np.ndarray, source_mask: np.ndarray, reference: np.ndarray, reference_mask: np.ndarray,
                    quantiles: int = 256) -> np.ndarray:
    """``source`` under the monotone intensity curve that gives its values inside ``source_mask`` the distribution of
    ``reference``'s values inside ``reference_mask`` (quantile matching, piecewise linear between ``quantiles``
    quantiles; below the lowest and above the highest quantile the curve continues with slope 1). It undoes a
    monotone change of contrast between two acquisitions of the same tissue."""
    src = np.asarray(source, dtype=np.float32)
    a = src[np.asarray(source_mask, bool)]
    b = np.asarray(reference, dtype=np.float32)[np.asarray(reference_mask, bool)]
    if a.size < quantiles or b.size < quantiles:
        raise ValueError(f"histogram matching needs at least {quantiles} voxels in each mask, got {a.size} and {b.size}")
    q = np.linspace(0, 100, quantiles)
    xa, xb = np.percentile(a, q), np.percentile(b, q)
    xa, keep = np.unique(xa, return_index=True)  # ties (a flat background) would make the curve a step
    xb = xb[keep]
    out = np.interp(src, xa, xb)
    low, high = src < xa[0], src > xa[-1]
    out[low] = xb[0] + (src[low] - xa[0])
    out[high] = xb[-1] + (src[high] - xa[-1])
    return out.astype(np.float32)


def random_monotone_curve(image: np.ndarray, rng: np.random.Generator, strength: float, knots: int = 5) -> np.ndarray:
    """``image`` under a random monotone, piecewise-linear curve on its range [min, max] with ``knots`` segments whose
    slopes vary by up to ``strength`` (0-1) around 1: another scanner's contrast (each tissue's intensity band moves
    on its own), the range kept."""
    lo, hi = float(image.min()), float(image.max())
    if hi <= lo or strength <= 0:
        return np.asarray(image, dtype=np.float32)
    slopes = rng.uniform(1 - strength, 1 + strength, knots)
    ys = lo + np.concatenate([[0.0], np.cumsum(slopes)]) / slopes.sum() * (hi - lo)
    return np.interp(image, np.linspace(lo, hi, knots + 1), ys).astype(np.float32)


def local_standardise(volume: np.ndarray, sigma_mm: float, spacing, eps: float = 1e-3) -> np.ndarray:
    """Each channel of ``volume`` ((C,) X, Y, Z) minus its local mean, divided by its local standard deviation
    (Gaussian windows of ``sigma_mm``): an input that a change of contrast or gain between scans moves less than
    the raw intensities."""
    from scipy import ndimage

    v = np.asarray(volume, dtype=np.float32)
    squeeze = v.ndim == 3
    v = v[None] if squeeze else v
    sigma = float(sigma_mm) / np.asarray(spacing, dtype=float)
    out = np.empty_like(v)
    for c in range(v.shape[0]):
        mean = ndimage.gaussian_filter(v[c], sigma)
        centred = v[c] - mean
        sd = np.sqrt(ndimage.gaussian_filter(centred**2, sigma))
        out[c] = centred / (sd + eps)
    return out[0] if squeeze else out


def blur_to_resolution(volume: np.ndarray, own_extent_mm, other_extent_mm, spacing) -> np.ndarray:
    """``volume`` ((C,) X, Y, Z) blurred along each axis where the other scan's voxels are longer than its own
    (``*_extent_mm``: a native voxel's extent along each axis of this grid): a box of length e has the variance
    e^2 / 12, so the axis gets a Gaussian of sigma sqrt((e_other^2 - e_own^2) / 12). Both scans then see the
    tissue at the coarser of their resolutions."""
    from scipy import ndimage

    own, other = np.asarray(own_extent_mm, dtype=float), np.asarray(other_extent_mm, dtype=float)
    sigma_mm = np.sqrt(np.clip(other**2 - own**2, 0, None) / 12.0)
    if not np.any(sigma_mm > 0.05):
        return np.asarray(volume, dtype=np.float32)
    sigma = sigma_mm / np.asarray(spacing, dtype=float)
    v = np.asarray(volume, dtype=np.float32)
    return ndimage.gaussian_filter(v, sigma if v.ndim == 3 else (0, *sigma))
