"""Preprocessing on real whole-head scans (pyradiomics brain1) and on the demo cohort."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from testdata import DATA
from landmarkflow.cohort import manifest, validation
from landmarkflow.preprocess import pipeline as preprocess
from landmarkflow.imaging import spatial
from landmarkflow.demo import synthetic
from landmarkflow.core.files import write_table
from landmarkflow.imaging.image import Image, read_header, read_image, write_image
from landmarkflow.imaging.masks import head_mask
from landmarkflow.imaging.resample import resample
from landmarkflow.io.landmarks import landmarks_frame, points_of, read_landmarks, write_landmarks

pytestmark = pytest.mark.slow
BRAIN1 = DATA / "pyradiomics-brain" / "brain1_image.nrrd"


def _moved_copy(image: Image, angles, shift):
    """The same head after a known rigid movement, sampled on the original grid; returns (image, post->pre matrix)."""
    move = np.eye(4)
    move[:3, :3] = spatial.rotation_matrix(angles)
    centre = spatial.voxel_to_world(np.array(image.shape) / 2, image.affine)
    move[:3, 3] = centre - move[:3, :3] @ centre + np.asarray(shift)
    # content at post world q is the pre content at move^-1 q ... so post world -> pre world = inv(move)
    post = resample(image, image.shape, image.affine, np.linalg.inv(move), order=1)
    return post, np.linalg.inv(move)


@pytest.fixture(scope="module")
def brain1_cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("brain1")
    pre = read_image(BRAIN1)
    # a small bright marker (3x3 voxels in plane, one slice) to follow through the pipeline
    ijk = np.array([150, 120, 12])
    pre.data[ijk[0] - 1 : ijk[0] + 2, ijk[1] - 1 : ijk[1] + 2, ijk[2]] = pre.data.max() * 1.5
    write_image(pre, d / "pre_t1ce.nrrd")
    post, post_to_pre = _moved_copy(pre, (2.0, -1.5, 3.0), (3.0, -2.0, 1.5))
    write_image(post, d / "post_t1ce.nii.gz")
    marker_pre = spatial.voxel_to_world(ijk, pre.affine)
    marker_post = spatial.apply_affine(np.linalg.inv(post_to_pre), marker_pre)
    lm_post = spatial.apply_affine(np.linalg.inv(post_to_pre), spatial.voxel_to_world([[100, 140, 14], [160, 100, 10]], pre.affine))
    write_landmarks(landmarks_frame(["1", "2"], lm_post), d / "post_lm.csv")
    pd.DataFrame(
        [
            ["b1", "pre", "image", "t1ce", "pre_t1ce.nrrd"],
            ["b1", "post", "image", "t1ce", "post_t1ce.nii.gz"],
            ["b1", "post", "landmarks", "expert", "post_lm.csv"],
        ],
        columns=manifest.COLUMNS,
    ).to_csv(d / "cohort.tsv", sep="\t", index=False)
    m = validation.validate_contents(manifest.load_manifest(d / "cohort.tsv"))
    info = preprocess.preprocess_patient(
        m, "b1", d / "out", preprocess.Settings(skull_strip="morph_atlas", seed=1), identity_out=d / "identity.csv"
    )
    return d, info, post_to_pre, marker_pre, marker_post, lm_post


def test_skull_strip_whole_head_scan():
    img = read_image(BRAIN1)
    brain = preprocess.skull_strip(img)
    volume_ml = brain.sum() * np.prod(img.spacing) / 1000
    # intracranial volume of an adult (1.1-1.9 l) plus partial volume of 6.5 mm slices
    assert 1100 < volume_ml < 2200, volume_ml
    head = head_mask(img)
    depth = ndimage.distance_transform_edt(head, sampling=img.spacing)
    ring = (depth > 0) & (depth < 5)  # scalp and skull
    assert (brain & ring).sum() / ring.sum() < 0.02
    for k in range(10, 21):  # axial slices through the cerebrum (z -13 to +52 mm): their inside is brain
        inner = ndimage.distance_transform_edt(head[:, :, k], sampling=img.spacing[:2]) > 25
        assert (brain[:, :, k] & inner).sum() / inner.sum() > 0.95, k


def test_preprocessed_grid_is_1mm_isotropic_and_ras(brain1_cohort):
    d, info, *_ = brain1_cohort
    img = read_image(d / "out" / "pre_t1ce.nii.gz")
    np.testing.assert_allclose(img.affine[:3, :3], np.eye(3), atol=1e-6)
    assert info["grid"]["shape"] == list(img.shape)
    for name in ("post_t1ce", "pre_brain", "post_brain"):
        assert read_image(d / "out" / f"{name}.nii.gz").same_grid(img)
    brain = read_image(d / "out" / "pre_brain.nii.gz").data > 0
    vals = img.data[brain]
    assert np.percentile(vals, 1) == pytest.approx(0, abs=0.02) and np.percentile(vals, 99) == pytest.approx(1, abs=0.02)
    assert not img.data[~brain].any()


def test_rigid_movement_is_recovered(brain1_cohort):
    d, info, post_to_pre, *_ = brain1_cohort
    est = np.array(info["post_to_pre"])
    pts = spatial.voxel_to_world(np.argwhere(read_image(d / "out" / "pre_brain.nii.gz").data > 0)[::500], np.array(info["grid"]["affine"]))
    err = np.linalg.norm(spatial.apply_affine(est, pts) - spatial.apply_affine(post_to_pre, pts), axis=1)
    assert err.mean() < 1.0 and np.percentile(err, 95) < 1.5, (err.mean(), err.max())


def test_points_round_trip_input_preprocessed_input(brain1_cohort):
    """A post-op point -> pre-op frame (our matrix) -> post-op (ANTs reading its own transform file)."""
    import ants

    d, info, _, _, _, lm_post = brain1_cohort
    mapped = points_of(read_landmarks(d / "identity.csv"))
    df = pd.DataFrame(spatial.ras_to_lps(mapped), columns=["x", "y", "z"])
    back = ants.apply_transforms_to_points(3, df, [str(d / "out" / "post_to_pre_rigid.mat")])
    back = spatial.lps_to_ras(back[["x", "y", "z"]].to_numpy())
    np.testing.assert_allclose(back, lm_post, atol=0.5)
    # pre-op world coordinates are those of the original scan: voxel -> world -> preprocessed voxel -> world
    grid = np.array(info["grid"]["affine"])
    orig = read_header(d / "pre_t1ce.nrrd")[1]
    p = spatial.voxel_to_world([100, 140, 14], orig)
    np.testing.assert_allclose(spatial.voxel_to_world(spatial.world_to_voxel(p, grid), grid), p, atol=1e-6)


def test_image_content_follows_the_transform(brain1_cohort):
    """The bright marker of the post-op scan appears in the preprocessed post-op image at the pre-op position."""
    d, info, _, marker_pre, marker_post, _ = brain1_cohort
    img = read_image(d / "out" / "post_t1ce.nii.gz")
    near = spatial.world_to_voxel(marker_pre, img.affine)
    box = tuple(slice(int(c) - 8, int(c) + 9) for c in near)
    sub = img.data[box]
    peak = np.argwhere(sub >= sub.max() * 0.9).mean(0) + [s.start for s in box]
    assert np.linalg.norm(spatial.voxel_to_world(peak, img.affine)[:2] - marker_pre[:2]) < 1.0  # in plane; slices are 6.5 mm


def test_demo_rigid_residual_far_from_cavity(demo_patient, tmp_path):
    out, paths = demo_patient
    rows = synthetic.manifest_rows(["demo01"], out, tmp_path)
    write_table(rows, tmp_path / "cohort.tsv")
    m = manifest.load_manifest(tmp_path / "cohort.tsv")
    info = preprocess.preprocess_patient(m, "demo01", tmp_path / "pp", preprocess.Settings(skull_strip="none", seed=3))
    truth = synthetic.Truth.load(paths["truth"])
    est = np.array(info["post_to_pre"])
    brain = read_image(tmp_path / "pp" / "pre_brain.nii.gz")
    p = spatial.voxel_to_world(np.argwhere(brain.data > 0)[::200], brain.affine)
    far = p[np.linalg.norm(p - truth.tumour_centre, axis=1) > 50]
    q = truth.tissue_to_post_world(far)  # (collapse is negligible there: checked in test_synthetic)
    err = np.linalg.norm(spatial.apply_affine(est, q) - truth.post_to_pre(q), axis=1)
    assert len(far) > 100 and err.mean() < 1.0 and err.max() < 1.5, (err.mean(), err.max())
    saved = json.loads((tmp_path / "pp" / "preproc.json").read_text())
    assert saved["reference_modality"] == "t1ce" and saved["modalities"] == ["t1ce", "flair"]
    assert (tmp_path / "pp" / "qc.png").stat().st_size > 10_000
    assert not (tmp_path / "pp.part").exists()


def test_settings_reject_unknown_values():
    with pytest.raises(ValueError, match=r"preprocess.skull_strip='bet': expected one of auto, none, morph_atlas"):
        preprocess.Settings(skull_strip="bet")


def _other_grid(image: Image):
    """(shape, affine) of a grid over the same world as ``image``: 1.1 x 1.1 x 3 mm voxels, origin shifted."""
    scale = np.array([1.1, 1.1, 3.0]) / image.spacing
    grid = image.affine @ np.diag([*scale, 1.0])
    grid[:3, 3] += [0.37, -0.6, 1.3]
    return tuple(int(n) for n in np.array(image.shape) / scale), grid


def _coregistered_cohort(d, same_grid: bool):
    """brain1 as both time points, co-registered by construction: the post-op scan is the same head on the
    same grid (plus noise), or resampled onto another grid of the same world (:func:`_other_grid`)."""
    pre = read_image(BRAIN1)
    write_image(pre, d / "pre_t1ce.nii.gz")
    if same_grid:
        post = Image(pre.data + np.random.default_rng(0).normal(0, 5, pre.shape).astype(np.float32), pre.affine)
    else:
        post = resample(pre, *_other_grid(pre), order=1)
    write_image(post, d / "post_t1ce.nii.gz")
    lm = spatial.voxel_to_world([[100, 140, 14], [160, 100, 10], [128, 128, 12]], pre.affine)
    write_landmarks(landmarks_frame(["1", "2", "3"], lm), d / "post_lm.csv")
    write_landmarks(landmarks_frame(["1", "2", "3"], lm), d / "pre_lm.csv")
    pd.DataFrame([["c", "pre", "image", "t1ce", "pre_t1ce.nii.gz"], ["c", "post", "image", "t1ce", "post_t1ce.nii.gz"],
                  ["c", "post", "landmarks", "expert", "post_lm.csv"], ["c", "pre", "landmarks", "expert", "pre_lm.csv"]],
                 columns=manifest.COLUMNS).to_csv(d / "cohort.tsv", sep="\t", index=False)
    return manifest.load_manifest(d / "cohort.tsv"), lm


@pytest.mark.parametrize("same_grid", [True, False], ids=["same grid", "another grid"])
def test_co_registered_scans_are_kept_as_they_are(tmp_path, same_grid):
    """Issue 26: BraTS-Reg's co-registered scans came out of the rigid step worse than they went in."""
    m, lm = _coregistered_cohort(tmp_path, same_grid)
    settings = preprocess.Settings(skull_strip="none", n4=False, seed=1)
    info = preprocess.preprocess_patient(m, "c", tmp_path / "out", settings, identity_out=tmp_path / "identity.csv")
    assert info["post_to_pre"] == np.eye(4).tolist()
    # on one grid the coarse fit decides (no full fit is paid for); on another grid the full one may have to
    expected = "share a grid and a coarse rigid fit would move" if same_grid else "kept as they are (not applied"
    assert expected in info["alignment"]["post"], info["alignment"]
    # the initial error is not made worse: the post-op landmarks stay where they were
    np.testing.assert_allclose(points_of(read_landmarks(tmp_path / "identity.csv")), lm, atol=1e-3)


@pytest.mark.parametrize("same_grid", [True, False], ids=["same grid", "another grid"])
def test_a_real_movement_is_applied(same_grid):
    pre = read_image(BRAIN1)
    moved, _ = _moved_copy(pre, (0.0, 0.0, 3.0), (3.0, -2.0, 0.0))  # the head moved between the scans
    post = moved if same_grid else resample(moved, *_other_grid(moved), order=1)
    brain = Image((head_mask(pre)).astype(np.uint8), pre.affine)
    matrix, note = preprocess.aligned_or_registered(pre, post, brain, None, keep_aligned=True)
    assert note.startswith("registered") and preprocess.max_displacement_mm(matrix, brain) > preprocess.SAME_GRID_KEEP_MM, note


def test_a_movement_just_above_the_limit_on_one_grid_is_registered_by_the_full_fit():
    """The coarse fit only keeps what moves by at most half the limit; a 3.5 mm shift on one grid gets the full
    fit, which finds it and applies it (the limit is 3 mm)."""
    pre = read_image(BRAIN1)
    post, _ = _moved_copy(pre, (0.0, 0.0, 0.0), (3.5, 0.0, 0.0))
    brain = Image((head_mask(pre)).astype(np.uint8), pre.affine)
    matrix, note = preprocess.aligned_or_registered(pre, post, brain, None, keep_aligned=True)
    assert note.startswith("registered"), note
    assert abs(preprocess.max_displacement_mm(matrix, brain) - 3.5) < 0.3
