"""ANTs at the boundary: matrices, resampling and landmark mapping in the right direction."""

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from testdata import oblique_affine
from landmarkflow.imaging.resample import resample, resample_mask
from landmarkflow.registration import ants as registration
from landmarkflow.imaging import spatial
from landmarkflow.imaging.image import Image


def _texture(seed=0, size=96):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.standard_normal((size,) * 3), 4).astype(np.float32)


def _sample_world(tex, affine, shape, shift=np.zeros(3)):
    """An image on (shape, affine) whose content at world p is texture(p - shift): the content moved by +shift."""
    ijk = np.argwhere(np.ones(shape, bool)).astype(float)
    w = spatial.voxel_to_world(ijk, affine) - shift
    vals = ndimage.map_coordinates(tex, (w / 1.5 + tex.shape[0] / 2).T, order=1)
    vals = (vals - vals.min()) / (vals.max() - vals.min())
    return Image(vals.reshape(shape).astype(np.float32), affine)


@pytest.fixture(scope="module")
def shifted_pair():
    tex = _texture()
    aff = oblique_affine(spacing=(1.5, 1.5, 1.5), angles=(5, -3, 8), origin=(-30.0, -35.0, -25.0), flip_x=False)
    shift = np.array([4.0, -2.5, 1.5])
    fixed = _sample_world(tex, aff, (40, 40, 36))
    moving = _sample_world(tex, aff, (40, 40, 36), shift)
    return fixed, moving, shift


def test_register_linear_matrix_and_resample(shifted_pair):
    fixed, moving, shift = shifted_pair
    m = registration.register_linear(fixed, moving, "Rigid")
    # fixed world -> moving world: content at p in fixed sits at p + shift in moving
    np.testing.assert_allclose(m[:3, 3] + m[:3, :3] @ np.zeros(3), shift, atol=0.5)
    back = resample(moving, fixed.shape, fixed.affine, m)
    inner = tuple(slice(6, -6) for _ in range(3))
    assert np.corrcoef(back.data[inner].ravel(), fixed.data[inner].ravel())[0, 1] > 0.97


def test_matrix_agrees_with_ants_point_transform(shifted_pair, tmp_path):
    fixed, moving, _ = shifted_pair
    m = registration.register_linear(fixed, moving, "Rigid", out_file=tmp_path / "r.mat")
    pts = spatial.voxel_to_world([[5, 6, 7], [30, 20, 10]], fixed.affine)
    np.testing.assert_allclose(registration.map_points(pts, [tmp_path / "r.mat"]), spatial.apply_affine(m, pts), atol=1e-3)


@pytest.mark.slow
def test_ants_baseline_moves_points_with_the_inverse_transform(shifted_pair, tmp_path):
    fixed, moving, shift = shifted_pair
    p_fixed = spatial.voxel_to_world([[20, 20, 18], [12, 25, 15]], fixed.affine)
    q_moving = p_fixed + shift  # the same content in the moving image
    out = registration.ants_baseline([fixed], [moving], q_moving, tmp_path / "ants", preset="quick")
    assert set(out) == {"ants_rigid", "ants_affine", "ants_syn", "ants_syn_nomask"}
    for method, pts in out.items():
        np.testing.assert_allclose(pts, p_fixed, atol=0.6, err_msg=method)
    # and the other way round: swap the images, the points move by +shift
    back = registration.ants_baseline([moving], [fixed], p_fixed, tmp_path / "ants2", preset="quick")
    np.testing.assert_allclose(back["ants_affine"], q_moving, atol=0.6)
    jac = pd.read_csv(tmp_path / "ants" / "jacobian.tsv", sep="\t").set_index("method")
    assert jac.loc["ants_syn", "nonpositive_jacobian"] == 0.0  # a smooth shift needs no folding
    for f in ("ants_syn_warp.nii.gz", "ants_syn_inverse_warp.nii.gz", "ants_affine_affine.mat", "ants_syn_jacobian.nii.gz",
              "ants_syn_warped_post.nii.gz"):
        assert (tmp_path / "ants" / f).exists(), f


def test_resample_mask_is_label_aware(oblique):
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[5:15, 5:15, 5:15] = 1
    img = Image(mask, np.diag([2.0, 2.0, 2.0, 1.0]))
    target = np.eye(4)
    target[:3, 3] = 0.25  # voxel centres off the mask's edges (no ties at exactly 0.5)
    out = resample_mask(img, (40, 40, 40), target)
    assert set(np.unique(out.data)) == {0, 1}
    # a 20 mm cube in 1 mm voxels: exactly 20 voxels across each axis through its centre; trilinear
    # weights trim only the corners, so the volume is kept within 1 %
    assert out.data[9:29, 19, 19].all() and out.data[19, :, 19].sum() == 20 and out.data[19, 19, :].sum() == 20
    assert abs(int(out.data.sum()) - 8000) < 80


def test_preset_table_quality_iterates_at_full_resolution_and_quick_does_not():
    """The preset table (issue: a careful user's default): quality, the schema's default, runs SyN and the affine
    stage at full resolution (the last level's iterations), quick stops one level above it."""
    from landmarkflow.core import config

    presets = registration.PRESETS
    assert config.default("ants", "preset") == "quality"
    assert set(presets) == set(config.properties("ants")["preset"]["enum"])
    quality, quick = presets["quality"], presets["quick"]
    assert quality["reg_iterations"][-1] > 0 and quality["aff_iterations"][-1] > 0
    assert quick["reg_iterations"][-1] == 0 and quick["aff_iterations"][-1] == 0
    assert sum(quality["reg_iterations"]) > sum(quick["reg_iterations"])
    for preset in presets.values():
        assert len(preset["aff_iterations"]) == len(preset["aff_shrink_factors"]) == len(preset["aff_smoothing_sigmas"])
