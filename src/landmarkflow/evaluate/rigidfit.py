"""Landmark-based rigid alignment: the least-squares rigid fit of two 3D point sets by SVD.

Arun, Huang and Blostein, "Least-squares fitting of two 3-D point sets", IEEE TPAMI 1987 (with the
reflection correction of Umeyama 1991), as Fang et al. (ASMUS 2023) used it to initialise MR-US
registration. Here: from the post-op landmarks (post-op world) and a method's redetected pre-op
positions (pre-op world), fit the rigid transform; its residual per landmark shows a landmark that
does not move with the others (suspect, or in tissue that really shifted), and its difference from
the preprocessing's image-based rigid registration shows how far the landmarks disagree with the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: collinear when the second singular value of the centred points is below this share of the first
COLLINEAR_RATIO = 1e-3


class FitError(ValueError):
    """The landmarks cannot determine a rigid transform (too few, coincident or collinear)."""


@dataclass
class RigidFit:
    rotation: np.ndarray  # (3, 3), proper (det +1)
    translation: np.ndarray  # (3,)
    residuals: np.ndarray  # (n,) mm: |R p + t - q| per landmark

    @property
    def matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = self.rotation, self.translation
        return m

    @property
    def rms_mm(self) -> float:
        return float(np.sqrt(np.mean(self.residuals**2)))

    def apply(self, points) -> np.ndarray:
        return np.asarray(points, dtype=float) @ self.rotation.T + self.translation


def fit_rigid(source, target, what: str = "landmarks") -> RigidFit:
    """The rigid transform (rotation, translation) minimising sum |R source_i + t - target_i|^2.

    Raises :class:`FitError` for fewer than 3 point pairs, for NaN, and for coincident or collinear
    source points (a rotation about their line would be undetermined); ``what`` names the points in
    the message.
    """
    p = np.asarray(source, dtype=float)
    q = np.asarray(target, dtype=float)
    if p.ndim != 2 or p.shape[1] != 3 or p.shape != q.shape:
        raise FitError(f"{what}: expected two (n, 3) point sets of the same size, got {p.shape} and {q.shape}")
    if len(p) < 3:
        raise FitError(f"{what}: a rigid fit needs at least 3 landmarks, got {len(p)}")
    if not (np.isfinite(p).all() and np.isfinite(q).all()):
        raise FitError(f"{what}: NaN or infinite coordinates")
    pc, qc = p.mean(0), q.mean(0)
    sv = np.linalg.svd(p - pc, compute_uv=False)
    if sv[0] < 1e-9 or sv[1] < COLLINEAR_RATIO * sv[0]:
        raise FitError(f"{what}: the {len(p)} landmarks are collinear (singular values {np.round(sv, 3).tolist()}): "
                       "a rotation about their line is undetermined; at least 3 landmarks off one line are needed")
    u, _, vt = np.linalg.svd((p - pc).T @ (q - qc))
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    t = qc - rot @ pc
    res = np.linalg.norm(p @ rot.T + t - q, axis=1)
    return RigidFit(rot, t, res)


def rotation_angle_deg(rotation) -> float:
    """The angle of a rotation matrix, in degrees."""
    r = np.asarray(rotation, dtype=float)[:3, :3]
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))


def compare(fit: RigidFit, reference: np.ndarray, points) -> tuple[float, float]:
    """How far ``fit`` is from a reference rigid transform (4x4): the rotation angle of the residual
    transform ``fit o reference^-1`` (degrees) and the mean distance between the two transforms'
    images of ``points`` (mm)."""
    ref = np.asarray(reference, dtype=float)
    residual = fit.rotation @ ref[:3, :3].T
    pts = np.asarray(points, dtype=float)
    moved = np.linalg.norm(fit.apply(pts) - (pts @ ref[:3, :3].T + ref[:3, 3]), axis=1)
    return rotation_angle_deg(residual), float(moved.mean())
