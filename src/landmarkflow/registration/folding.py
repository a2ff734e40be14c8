"""Folding of a registration's deformation: the share of non-positive Jacobian determinants and the row of
a registration folder's Jacobian table (``layout.jacobian_table``), the same for every registration."""

from __future__ import annotations

import numpy as np


def nonpositive_share(jacobian, mask=None) -> float:
    """Share (0-1) of the voxels inside ``mask`` (everywhere when None) with a non-positive Jacobian
    determinant: folding. A diffeomorphic registration should keep it below 0.001."""
    jac = np.asarray(jacobian)
    sel = jac if mask is None else jac[np.asarray(mask, dtype=bool)]
    return float(np.mean(sel <= 0)) if sel.size else 0.0


def jacobian_row(method: str, jacobian, mask, seconds: float) -> dict:
    """One row of the Jacobian table: the method, its share of non-positive determinants and its smallest
    determinant inside ``mask`` (the brain; everywhere when None), its run time."""
    jac = np.asarray(jacobian)
    inside = jac if mask is None else jac[np.asarray(mask, dtype=bool)]
    return {"method": method, "nonpositive_jacobian": nonpositive_share(jac, mask),
            "min_jacobian": float(inside.min()) if inside.size else np.nan, "seconds": round(float(seconds), 1)}
