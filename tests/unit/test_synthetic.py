"""The demo cohort generator: valid files, exact ground truth that the images agree with, a seed."""

import numpy as np
import pytest
from scipy import ndimage, stats

from landmarkflow.cohort import manifest, validation
from landmarkflow.imaging import spatial
from landmarkflow.demo import synthetic
from landmarkflow.core.files import write_table
from landmarkflow.imaging.image import read_image
from landmarkflow.io.landmarks import points_of, read_landmarks

pytestmark = pytest.mark.slow


def _mapped_correlation(pre, post, brain_post, mapping):
    """Spearman correlation of post-op voxels with the pre-op image sampled at mapping(post world)."""
    idx = np.argwhere(brain_post)[::7]
    q = spatial.voxel_to_world(idx, post.affine)
    p = mapping(q)
    vals = ndimage.map_coordinates(pre.data, spatial.world_to_voxel(p, pre.affine).T, order=1)
    return stats.spearmanr(vals, post.data[tuple(idx.T)]).statistic


def test_demo_patient_is_a_valid_cohort(demo_patient, tmp_path):
    out, paths = demo_patient
    rows = synthetic.manifest_rows(["demo01"], out, tmp_path)
    write_table(rows, tmp_path / "cohort.tsv")
    m = validation.validate_contents(manifest.load_manifest(tmp_path / "cohort.tsv"))
    assert m.common_modalities("demo01") == ["t1ce", "flair"]
    assert m.warnings == []
    pre, post = read_image(paths["pre_t1ce"]), read_image(paths["post_t1ce"])
    # different acquisitions: 1 mm isotropic before, thick slices after
    np.testing.assert_allclose(pre.spacing, [1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(post.spacing, [1, 1, synthetic.POST_SLICE_MM], atol=1e-6)
    assert np.linalg.det(pre.affine[:3, :3]) < 0  # stored left-right flipped (LAS)


def test_landmarks_are_near_the_cavity_and_outside_it(demo_patient):
    _, paths = demo_patient
    post_lm = read_landmarks(paths["post_landmarks_expert"])
    assert len(post_lm) == 3
    cavity = read_image(paths["post_resection"], dtype=None)
    dist = ndimage.distance_transform_edt(cavity.data == 0, sampling=cavity.spacing)
    ijk = np.rint(spatial.world_to_voxel(points_of(post_lm), cavity.affine)).astype(int)
    d = dist[tuple(ijk.T)]
    # on anatomy around the cavity, not on its wall: 6-20 mm away in the 1 mm truth, less a thick slice here
    assert np.all(d >= 6 - synthetic.POST_SLICE_MM) and np.all(d <= 20 + synthetic.POST_SLICE_MM), d
    pts = points_of(post_lm)
    assert min(np.linalg.norm(a - b) for i, a in enumerate(pts) for b in pts[i + 1 :]) >= 15


def test_ground_truth_is_exact_and_the_images_agree_with_it(demo_patient):
    out, paths = demo_patient
    truth = synthetic.Truth.load(paths["truth"])
    q = points_of(read_landmarks(paths["post_landmarks_expert"]))
    p = points_of(read_landmarks(paths["pre_landmarks_expert"]))
    np.testing.assert_allclose(p, truth.post_to_pre(q), atol=1e-3)  # 4 decimals in the CSV
    initial = np.linalg.norm(p - truth.rigid_post_to_pre(q), axis=1)
    assert np.all((initial > 0.3) & (initial < 8)), initial  # a few mm of tissue shift
    # far from the tumour only the rigid head movement acts
    far = np.asarray(truth.tumour_centre) + np.array([[70.0, 0, 0], [0, 75.0, 0], [-65.0, 0, 10]])
    q_far = truth.tissue_to_post_world(far)
    np.testing.assert_allclose(truth.post_to_pre(q_far), far, atol=0.05)

    pre, post = read_image(paths["pre_t1ce"]), read_image(paths["post_t1ce"])
    cavity = read_image(paths["post_resection"], dtype=None).data > 0
    brain_post = (post.data > 150) & ~ndimage.binary_dilation(cavity, iterations=3)
    right = _mapped_correlation(pre, post, brain_post, truth.post_to_pre)
    no_motion = _mapped_correlation(pre, post, brain_post, lambda x: x)
    assert right > 0.75, right
    assert right > no_motion + 0.1, (right, no_motion)
    # ... but the post-op image is not a warped copy of the pre-op texture
    assert right < 0.97, right


def test_same_seed_same_patient(demo_patient, tmp_path):
    _, paths = demo_patient
    again = synthetic.make_patient("demo01", tmp_path, seed=7)
    for key in ("post_landmarks_expert", "pre_landmarks_expert", "pre_landmarks_expert2"):
        assert open(again[key]).read() == open(paths[key]).read()
    np.testing.assert_array_equal(read_image(again["post_flair"]).data, read_image(paths["post_flair"]).data)
    other = synthetic.patient_rng(7, "demo02").integers(1 << 30)
    assert other != synthetic.patient_rng(7, "demo01").integers(1 << 30)


def test_landmarks_near_the_cavity_are_added_without_changing_the_others(demo_patient, tmp_path):
    """Issue 28: the demo had no landmark where registration fails; adding one keeps today's landmarks and images."""
    _, paths = demo_patient
    near = synthetic.make_patient("demo01", tmp_path, seed=7, near_cavity=1)
    before = read_landmarks(paths["post_landmarks_expert"])
    after = read_landmarks(near["post_landmarks_expert"])
    assert after["landmark"].tolist() == ["1", "2", "3", "4"]
    np.testing.assert_array_equal(points_of(after)[:3], points_of(before))
    np.testing.assert_array_equal(read_image(near["post_t1ce"]).data, read_image(paths["post_t1ce"]).data)
    cavity = read_image(near["post_resection"], dtype=None)
    dist = ndimage.distance_transform_edt(cavity.data == 0, sampling=cavity.spacing)
    ijk = np.rint(spatial.world_to_voxel(points_of(after)[3], cavity.affine)).astype(int)
    assert 0 < dist[tuple(ijk)] < 6.0, dist[tuple(ijk)]  # within 6 mm of the cavity, outside it
    truth = synthetic.Truth.load(near["truth"])
    pre_truth = points_of(read_landmarks(near["pre_landmarks_expert"]))[3]
    np.testing.assert_allclose(pre_truth, truth.post_to_pre(points_of(after)[3])[0], atol=1e-3)
    tumour = read_image(near["pre_tumor"], dtype=None)
    t_ijk = np.rint(spatial.world_to_voxel(pre_truth, tumour.affine)).astype(int)
    assert tumour.data[tuple(t_ijk)] == 0  # on tissue that exists at both time points


def test_the_hard_acquisition_changes_the_follow_up_only(demo_patient, tmp_path):
    _, paths = demo_patient
    hard = synthetic.make_patient("demo01", tmp_path, seed=7, acquisition="hard")
    for key in ("post_landmarks_expert", "pre_landmarks_expert", "truth"):
        assert open(hard[key]).read() == open(paths[key]).read()
    np.testing.assert_array_equal(read_image(hard["pre_t1ce"]).data, read_image(paths["pre_t1ce"]).data)
    standard, other = read_image(paths["post_t1ce"]), read_image(hard["post_t1ce"])
    assert other.spacing[2] == pytest.approx(5.0) and standard.spacing[2] == pytest.approx(synthetic.POST_SLICE_MM)
    # another contrast: the same slab of tissue, sampled from both, ranks its voxels differently
    z = np.rint(spatial.world_to_voxel(points_of(read_landmarks(paths["post_landmarks_expert"]))[0], other.affine)).astype(int)[2]
    idx = np.argwhere(other.data[:, :, z] > 200)
    world = spatial.voxel_to_world(np.c_[idx[:, :2], np.full(len(idx), z)], other.affine)
    vals = ndimage.map_coordinates(standard.data.astype(float), spatial.world_to_voxel(world, standard.affine).T, order=1)
    rho = stats.spearmanr(vals, other.data[idx[:, 0], idx[:, 1], z]).statistic
    assert 0.3 < rho < 0.95, rho
    with pytest.raises(ValueError, match="demo acquisition 'odd': expected one of standard, hard"):
        synthetic.make_patient("demo01", tmp_path / "x", seed=7, acquisition="odd")
