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
