"""Coordinate conventions, in one place.

Every landmark the project writes is a *world* coordinate in millimetres in the
NIfTI/RAS convention: ``xyz = affine @ [i, j, k, 1]`` where ``affine`` is the
image's 4x4 voxel-to-RAS matrix. ITK, SimpleITK and ANTs describe the same
physical space in LPS (x grows to the Left, y to the Posterior), so a point
crosses that boundary through :func:`ras_to_lps` / :func:`lps_to_ras`, a
transform matrix through :func:`lps_to_ras_matrix`, and an image's geometry
through :func:`affine_from_itk` / :func:`itk_from_affine`.
Nothing else in the package flips signs.

Arrays of points are ``(n, 3)``; a single point ``(3,)`` is accepted as well and
the result has the same shape as the input.
"""

from __future__ import annotations

import numpy as np

#: Diagonal that maps RAS to LPS and back (it is its own inverse).
_FLIP = np.array([-1.0, -1.0, 1.0])
_FLIP4 = np.diag([-1.0, -1.0, 1.0, 1.0])


def _as_points(points) -> tuple[np.ndarray, bool]:
    arr = np.asarray(points, dtype=float)
    single = arr.ndim == 1
    arr = np.atleast_2d(arr)
    if arr.shape[-1] != 3 or arr.ndim != 2:
        raise ValueError(f"expected points of shape (n, 3) or (3,), got {np.shape(points)}")
    return arr, single


def _restore(arr: np.ndarray, single: bool) -> np.ndarray:
    return arr[0] if single else arr


def check_affine(affine) -> np.ndarray:
    """Return ``affine`` as a float (4, 4) array; raise if it is not an invertible affine."""
    a = np.asarray(affine, dtype=float)
    if a.shape != (4, 4):
        raise ValueError(f"an affine must be 4x4, got shape {a.shape}")
    if not np.allclose(a[3], [0, 0, 0, 1]):
        raise ValueError(f"the last row of an affine must be [0, 0, 0, 1], got {a[3].tolist()}")
    if not np.all(np.isfinite(a)) or abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise ValueError("the affine is singular or not finite")
    return a


def voxel_to_world(ijk, affine) -> np.ndarray:
    """Voxel indices (continuous, 0-based) to world RAS mm."""
    pts, single = _as_points(ijk)
    a = check_affine(affine)
    return _restore(pts @ a[:3, :3].T + a[:3, 3], single)


def world_to_voxel(xyz, affine) -> np.ndarray:
    """World RAS mm to continuous voxel indices (0-based; round to get the voxel)."""
    pts, single = _as_points(xyz)
    inv = np.linalg.inv(check_affine(affine))
    return _restore(pts @ inv[:3, :3].T + inv[:3, 3], single)


def ras_to_lps(xyz) -> np.ndarray:
    """RAS mm (NIfTI) to LPS mm (ITK/ANTs): negate x and y."""
    pts, single = _as_points(xyz)
    return _restore(pts * _FLIP, single)


def lps_to_ras(xyz) -> np.ndarray:
    """LPS mm (ITK/ANTs) to RAS mm (NIfTI): negate x and y."""
    return ras_to_lps(xyz)


def lps_to_ras_matrix(matrix) -> np.ndarray:
    """A 4x4 world-to-world matrix in LPS (ITK/ANTs) as the same transform in RAS (its own inverse)."""
    return _FLIP4 @ np.asarray(matrix, dtype=float) @ _FLIP4


def affine_from_itk(spacing, origin, direction) -> np.ndarray:
    """RAS voxel-to-world affine from an ITK geometry (LPS origin and direction).

    ``direction`` is ITK's 3x3 matrix (or its row-major flattening) whose
    columns are the voxel axes in LPS.
    """
    spacing = np.asarray(spacing, dtype=float).reshape(3)
    origin = np.asarray(origin, dtype=float).reshape(3)
    direction = np.asarray(direction, dtype=float).reshape(3, 3)
    if np.any(spacing <= 0):
        raise ValueError(f"voxel spacing must be positive, got {spacing.tolist()}")
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing  # scales column j by spacing[j]
    lps[:3, 3] = origin
    return _FLIP4 @ lps


def itk_from_affine(affine) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(spacing, origin, direction)`` in ITK's LPS convention from a RAS affine.

    Raises ``ValueError`` for a sheared affine, which ITK cannot represent.
    """
    lps = _FLIP4 @ check_affine(affine)
    m = lps[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    direction = m / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise ValueError("the affine has shear; ITK images need orthogonal voxel axes")
    return spacing, lps[:3, 3].copy(), direction


def spacing_of(affine) -> np.ndarray:
    """Voxel size in mm along each voxel axis."""
    return np.linalg.norm(check_affine(affine)[:3, :3], axis=0)


def inside_image(xyz, affine, shape, margin_vox: float = 0.0) -> np.ndarray:
    """Boolean per point: does the world point fall inside the image's voxel grid?

    The grid extends half a voxel beyond the first and last voxel centres;
    ``margin_vox`` shrinks it further.
    """
    ijk = np.atleast_2d(world_to_voxel(xyz, affine))
    lo = -0.5 + margin_vox
    hi = np.asarray(shape[:3], dtype=float) - 0.5 - margin_vox
    return np.all((ijk >= lo) & (ijk <= hi), axis=1)


def apply_affine(matrix, xyz) -> np.ndarray:
    """Apply a 4x4 world-to-world matrix to points."""
    pts, single = _as_points(xyz)
    m = np.asarray(matrix, dtype=float)
    return _restore(pts @ m[:3, :3].T + m[:3, 3], single)


def rotation_matrix(angles_deg) -> np.ndarray:
    """3x3 rotation from Euler angles (degrees) about x, then y, then z."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx
