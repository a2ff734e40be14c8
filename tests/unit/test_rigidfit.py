"""Landmark-based rigid alignment (Arun et al. 1987) and its comparison with an image-based rigid transform."""

import numpy as np
import pytest

from landmarkflow.evaluate import rigidfit
from landmarkflow.imaging import spatial


def _points(n=6, seed=0):
    return np.random.default_rng(seed).uniform(-40, 40, (n, 3)) + [10.0, -20.0, 35.0]


def _rigid(angles=(7.0, -12.0, 25.0), t=(3.5, -8.0, 12.0)):
    m = np.eye(4)
    m[:3, :3] = spatial.rotation_matrix(angles)
    m[:3, 3] = t
    return m


def test_recovers_a_known_rigid_transform():
    p = _points()
    m = _rigid()
    fit = rigidfit.fit_rigid(p, spatial.apply_affine(m, p))
    np.testing.assert_allclose(fit.matrix, m, atol=1e-9)
    assert fit.rms_mm < 1e-9 and np.linalg.det(fit.rotation) == pytest.approx(1.0)


def test_is_a_proper_rotation_for_mirrored_points():
    # a reflection is the best orthogonal fit; the fit must still return a rotation (det +1)
    p = _points(5, seed=1)
    q = p * [-1.0, 1.0, 1.0]
    fit = rigidfit.fit_rigid(p, q)
    assert np.linalg.det(fit.rotation) == pytest.approx(1.0)
    assert fit.rms_mm > 1.0


def test_residual_marks_the_landmark_that_moved():
    p = _points(6, seed=2)
    q = spatial.apply_affine(_rigid(), p)
    q[3] += [0.0, 6.0, 0.0]
    fit = rigidfit.fit_rigid(p, q)
    assert np.argmax(fit.residuals) == 3 and fit.residuals[3] > 3.0
    assert np.delete(fit.residuals, 3).max() < fit.residuals[3] / 2


def test_least_squares_against_brute_force_perturbation():
    rng = np.random.default_rng(3)
    p = _points(8, seed=3)
    q = spatial.apply_affine(_rigid(), p) + rng.normal(0, 1.0, p.shape)
    fit = rigidfit.fit_rigid(p, q)
    best = np.sum(fit.residuals**2)
    for _ in range(50):  # any nearby rigid transform fits worse
        m = _rigid(rng.normal(0, 0.5, 3), rng.normal(0, 0.5, 3)) @ fit.matrix
        assert np.sum(np.linalg.norm(spatial.apply_affine(m, p) - q, axis=1) ** 2) >= best - 1e-9


def test_comparison_with_the_image_rigid_transform():
    p = _points()
    image = _rigid((2.0, 1.0, -3.0), (1.0, 2.0, 0.5))
    extra = _rigid((0.0, 0.0, 5.0), (0.0, 0.0, 0.0))  # 5 degrees more about z
    fit = rigidfit.fit_rigid(p, spatial.apply_affine(extra @ image, p))
    angle, shift = rigidfit.compare(fit, image, p)
    assert angle == pytest.approx(5.0, abs=1e-6) and shift > 0
    same = rigidfit.fit_rigid(p, spatial.apply_affine(image, p))
    assert rigidfit.compare(same, image, p) == pytest.approx((0.0, 0.0), abs=1e-6)


def test_too_few_collinear_and_nan_landmarks_are_clear_errors():
    p = _points(3)
    with pytest.raises(rigidfit.FitError, match="P7, agent_guided: a rigid fit needs at least 3 landmarks, got 2"):
        rigidfit.fit_rigid(p[:2], p[:2], "P7, agent_guided")
    line = np.outer(np.arange(4.0), [1.0, 2.0, -1.0]) + [5, 5, 5]
    with pytest.raises(rigidfit.FitError, match="collinear"):
        rigidfit.fit_rigid(line, line + 1.0)
    with pytest.raises(rigidfit.FitError, match="collinear"):
        rigidfit.fit_rigid(np.ones((3, 3)), np.ones((3, 3)))  # coincident
    bad = p.copy()
    bad[1, 2] = np.nan
    with pytest.raises(rigidfit.FitError, match="NaN"):
        rigidfit.fit_rigid(bad, p)
