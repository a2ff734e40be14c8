"""The second registration (bidirectional SVF with forward-backward consistency, registration.svf): a known
smooth warp is recovered at landmarks without folding, the consistency map lights up a region present in one
image only, the per-point consistency tells such points from the others, and the CPU run is deterministic."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from landmarkflow.registration import svf

SPACING = np.array([1.0, 1.0, 1.2])
SHAPE = (48, 48, 48)
#: for the known warp, a full-resolution level (cheap at 48^3; the defaults stop at 2 mm for brain-sized
#: scans) brings the landmark error from ~0.45 to ~0.25 mm
FINE = svf.SvfSettings(levels=(4, 2, 1), iterations=(60, 30, 20))
#: the known warp: a Gaussian bump of displacement (voxels), at most |AMP| ~ 3.1 voxels, Jacobian in ~[0.8, 1.2]
CENTRE, SIGMA, AMP = np.array([24.0, 23.0, 25.0]), 8.0, np.array([2.5, -1.5, 1.0])
CAVITY_CENTRE, CAVITY_MM = np.array([24, 22, 26]), 6.0


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on 48^3 volumes thread synchronisation per operation costs more than it saves
    (and far more on a busy machine); restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _texture(shape=SHAPE, seed=0, channels=2) -> np.ndarray:
    """(C, shape) smooth random texture (filtered noise) with blobs of both signs: structure everywhere."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(channels):
        t = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
        spikes = np.zeros(shape)
        idx = tuple(rng.integers(4, np.array(shape) - 4, size=(30, 3)).T)
        spikes[idx] = rng.choice([-1.0, 1.0], 30) * 300
        out.append(t / t.std() + ndimage.gaussian_filter(spikes, 3.0))
    return np.stack(out).astype(np.float32)


def _bump(points: np.ndarray) -> np.ndarray:
    """The known displacement d (n, 3) voxels at (n, 3) points: phi(x) = x + d(x) maps fixed to moving."""
    r2 = ((points - CENTRE) ** 2).sum(1)
    return np.exp(-r2 / (2 * SIGMA**2))[:, None] * AMP[None]


def _inverse(points: np.ndarray, iterations: int = 60) -> np.ndarray:
    """phi^-1 at (n, 3) points: the fixed point of x = y - d(x) (a contraction: |grad d| < 0.25)."""
    x = points.copy()
    for _ in range(iterations):
        x = points - _bump(x)
    return x


def _interior(margin=4) -> np.ndarray:
    m = np.zeros(SHAPE, bool)
    m[margin:-margin, margin:-margin, margin:-margin] = True
    return m


@pytest.fixture(scope="module")
def warped_case():
    """A texture (fixed) and its warp (moving(y) = fixed(phi^-1(y))), registered; moving-image landmarks
    near the bump and their exact fixed-image positions."""
    fixed = _texture()
    grid = np.indices(SHAPE).reshape(3, -1).T.astype(float)
    source = _inverse(grid).T
    moving = np.stack([ndimage.map_coordinates(c, source, order=3, mode="nearest").reshape(SHAPE) for c in fixed])
    q = CENTRE + np.random.default_rng(1).uniform(-9, 9, (10, 3))
    result = svf.register(fixed, moving.astype(np.float32), SPACING, settings=FINE)
    return fixed, moving, q, _inverse(q), result


def test_recovers_a_known_smooth_warp_at_landmarks(warped_case):
    fixed, moving, q, truth, result = warped_case
    predicted, consistency = result.map_points(q)
    before = np.linalg.norm((q - truth) * SPACING, axis=1)
    after = np.linalg.norm((predicted - truth) * SPACING, axis=1)
    assert before.mean() > 1.5  # the warp matters at the landmarks
    assert after.max() < 0.5, after
    assert after.mean() < 0.15 * before.mean()
    assert consistency.max() < 0.5  # both estimates agree where the images correspond
    assert svf.nonpositive_share(result.jacobian, _interior()) == 0.0
    assert result.jacobian[_interior()].min() > 0.5


def test_inverse_and_warp_of_the_forward_transform(warped_case):
    fixed, moving, _, _, result = warped_case
    inner = _interior(6)
    # exp(-v) undoes exp(v): x + u_f(x) + u_inv(x + u_f(x)) = x
    x = np.argwhere(inner).astype(float)
    y = x + np.stack([ndimage.map_coordinates(c, x.T, order=1) for c in result.forward], 1)
    back = y + np.stack([ndimage.map_coordinates(c, y.T, order=1) for c in result.inverse], 1)
    err = np.linalg.norm(back - x, axis=1)
    assert err.mean() < 0.03 and err.max() < 0.3  # voxels; the largest at the bump's centre
    # the moving image warped onto the fixed grid matches the fixed image much better than before
    warped = result.warp(moving)
    assert warped.shape == fixed.shape
    before = np.abs(moving - fixed)[:, inner].mean()
    after = np.abs(warped - fixed)[:, inner].mean()
    assert after < 0.3 * before


@pytest.fixture(scope="module")
def cavity_case():
    """The same texture twice, but a sphere of the moving image replaced by a dark constant (a cavity: the
    fixed image's tissue there has no correspondence); no masks given, the default settings."""
    fixed = _texture(seed=3)
    moving = fixed.copy()
    offset = np.indices(SHAPE) - CAVITY_CENTRE[:, None, None, None]
    dist = np.linalg.norm(offset * SPACING[:, None, None, None], axis=0)
    moving[:, dist <= CAVITY_MM] = fixed.min()
    return fixed, moving, dist, svf.register(fixed, moving, SPACING)


def test_consistency_map_lights_up_a_region_present_in_one_image_only(cavity_case):
    _, _, dist, result = cavity_case
    inside, far = dist <= CAVITY_MM, dist > CAVITY_MM + 8
    for nc in (result.no_correspondence, result.no_correspondence_moving):
        assert nc.dtype == bool and nc.shape == SHAPE
        assert nc[inside].mean() > 0.5
        assert nc[far].mean() < 0.05
    assert result.consistency_mm[inside].mean() > 5 * result.consistency_mm[far].mean()
    # the cavity is shrunk by the forward transform, not torn: no folding
    assert svf.nonpositive_share(result.jacobian, _interior()) < 0.001


def test_point_consistency_is_small_far_from_the_cavity_and_large_near_it(cavity_case):
    _, _, _, result = cavity_case
    near = CAVITY_CENTRE + np.array([[3, 0, 0], [0, -3, 0], [0, 0, 2.5], [-2, 2, 0]])
    far = np.array([[8, 8, 8], [39, 38, 39], [10, 38, 12], [38, 10, 38]], float)
    _, c_near = result.map_points(near)
    mapped, c_far = result.map_points(far)
    assert c_far.max() < 0.5
    assert c_near.min() > 1.0
    # far from the cavity the images are identical: the points stay where they are
    assert np.abs((mapped - far) * SPACING).max() < 0.5


def test_deterministic_on_the_cpu():
    fixed = _texture((32, 32, 32), seed=5)
    moving = np.roll(fixed, 1, axis=1)
    mask = np.zeros((32, 32, 32), bool)
    mask[3:-3, 3:-3, 3:-3] = True
    settings = svf.SvfSettings(levels=(2, 1), iterations=(20, 10), mask_every=5)
    a = svf.register(fixed, moving, SPACING, fixed_mask=mask, moving_mask=mask, settings=settings)
    b = svf.register(fixed, moving, SPACING, fixed_mask=mask, moving_mask=mask, settings=settings)
    assert np.abs(a.forward).max() > 0.3  # it did register something
    for name in ("forward", "backward", "inverse", "consistency_mm", "no_correspondence", "no_correspondence_moving",
                 "jacobian"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_settings_and_inputs_are_checked():
    with pytest.raises(ValueError, match="same, non-zero length"):
        svf.SvfSettings(levels=(4, 2), iterations=(10,))
    with pytest.raises(ValueError, match="odd"):
        svf.SvfSettings(window=6)
    small = np.zeros((1, 8, 8, 8), np.float32)
    with pytest.raises(ValueError, match="one grid"):
        svf.register(small, np.zeros((1, 8, 8, 9), np.float32), (1, 1, 1))
    with pytest.raises(ValueError, match="mask of shape"):
        svf.register(small, small, (1, 1, 1), fixed_mask=np.ones((8, 8, 9), bool))


def test_nonpositive_share():
    jac = np.ones((4, 4, 4))
    jac[0, 0, :2] = [0.0, -1.0]
    mask = np.zeros((4, 4, 4), bool)
    mask[0] = True
    assert svf.nonpositive_share(jac, mask) == pytest.approx(2 / 16)
    assert svf.nonpositive_share(jac) == pytest.approx(2 / 64)
    assert svf.nonpositive_share(jac, ~mask) == 0.0


def test_the_patient_job_maps_the_landmarks_in_world_mm_and_writes_its_folder(warped_case, tmp_path):
    """run_svf on a preprocessed folder (the known warp on a grid with spacing and an origin): the post-op
    landmarks land at their pre-op positions in world mm, and the folder holds the maps and the Jacobian table."""
    from testdata import write_preproc

    from landmarkflow.core import layout
    from landmarkflow.imaging import spatial
    from landmarkflow.imaging.image import read_image
    from landmarkflow.io.landmarks import points_of, read_landmarks

    fixed, moving, q, truth, _ = warped_case
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = [-30.0, 12.5, 4.0]
    brain = np.ones(SHAPE, bool)
    folder = write_preproc(tmp_path / "preproc", affine, {("pre", "t1"): fixed[0], ("post", "t1"): moving[0],
                                                          ("pre", "t2"): fixed[1], ("post", "t2"): moving[1]},
                           brain={"pre": brain, "post": brain},
                           landmarks={("post", "expert"): ([str(i) for i in range(len(q))], spatial.voxel_to_world(q, affine))})
    settings = {"levels": [4, 2, 1], "iterations": [60, 30, 20]}
    svf.run_svf(folder.path, tmp_path / "svf", tmp_path / "svf.csv", settings, seed=0, device="cpu", threads=1)
    out = read_landmarks(tmp_path / "svf.csv")
    err = np.linalg.norm(points_of(out) - spatial.voxel_to_world(truth, affine), axis=1)
    assert err.max() < 0.5, err
    assert (out["consistency_mm"].astype(float) < 0.5).all()
    assert {p.name for p in (tmp_path / "svf").iterdir()} == set(svf.SVF_FILES.values()) | {layout.JACOBIAN, layout.DEVICE}
    consistency = read_image(tmp_path / "svf" / svf.SVF_FILES["consistency"])
    np.testing.assert_allclose(consistency.affine, affine)
    import pandas as pd

    jac = pd.read_csv(layout.jacobian_table(tmp_path / "svf"), sep="\t")
    assert jac["method"].tolist() == ["svf"] and jac["nonpositive_jacobian"].iloc[0] == 0.0
