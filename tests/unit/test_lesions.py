"""Derived lesion masks (preprocess.lesions, issue 27): the rule on an inconsistency map, and the patient's
lesion folder from a real svf registration of a pair where one image has a cavity the other lacks."""

import json

import numpy as np
import pytest
from scipy import ndimage

from landmarkflow.imaging.image import read_image
from landmarkflow.preprocess import lesions

SHAPE = (40, 40, 40)


def _ball(centre, radius_vox, shape=SHAPE) -> np.ndarray:
    return np.linalg.norm(np.indices(shape) - np.asarray(centre)[:, None, None, None], axis=0) <= radius_vox


def test_the_rule_keeps_the_large_region_and_drops_noise_and_small_spots():
    rng = np.random.default_rng(0)
    brain = _ball((20, 20, 20), 18)
    lesion = _ball((24, 18, 20), 6)
    spot = _ball((10, 26, 14), 1.5)
    err = 0.5 + 0.3 * rng.random(SHAPE)  # inconsistency everywhere, below the threshold
    err[lesion] += 6.0
    err[spot] += 6.0
    err = ndimage.gaussian_filter(err, 1.0)
    cfg = lesions.LesionSettings(threshold_mm=2.0, min_ml=0.1, components=1, closing_mm=2.0)
    mask = lesions.derive_mask(err, brain, (1.0, 1.0, 1.0), cfg)
    assert mask.dtype == bool and mask.shape == SHAPE
    assert lesions.dice(mask, lesion) > 0.85
    assert not mask[spot].any()  # the second region is not kept (components: 1)
    assert not mask[~brain].any()
    # two components kept: the spot too, if it is large enough
    two = lesions.derive_mask(err, brain, (1.0, 1.0, 1.0), lesions.LesionSettings(threshold_mm=2.0, min_ml=0.001,
                                                                                  components=2, closing_mm=0.0))
    assert two[spot].any() and lesions.dice(two & ~_ball((10, 26, 14), 3), lesion) > 0.85
    # a region smaller than min_ml, or nothing above the threshold: no lesion
    assert not lesions.derive_mask(err, brain, (1.0, 1.0, 1.0), lesions.LesionSettings(min_ml=10.0)).any()
    assert not lesions.derive_mask(err, brain, (1.0, 1.0, 1.0), lesions.LesionSettings(threshold_mm=50.0)).any()


def test_the_rule_measures_volume_and_closing_in_mm():
    """On a grid of 2 mm voxels a 1 ml region is 125 voxels: min_ml must count mm^3, not voxels."""
    brain = np.ones(SHAPE, bool)
    err = np.zeros(SHAPE)
    region = np.zeros(SHAPE, bool)
    region[10:15, 10:15, 10:15] = True  # 125 voxels
    err[region] = 5.0
    cfg = lesions.LesionSettings(threshold_mm=1.0, min_ml=0.5, closing_mm=0.0)
    assert lesions.derive_mask(err, brain, (2.0, 2.0, 2.0), cfg).sum() == 125  # 1 ml
    assert not lesions.derive_mask(err, brain, (1.0, 1.0, 1.0), cfg).any()  # 0.125 ml
    with pytest.raises(ValueError, match="not on one grid"):
        lesions.derive_mask(err[:-1], brain, (1.0, 1.0, 1.0), cfg)


def test_dice():
    a = _ball((20, 20, 20), 5)
    assert lesions.dice(a, a) == 1.0 and lesions.dice(a, ~a) == 0.0 and np.isnan(lesions.dice(a & ~a, a & ~a))


@pytest.fixture(scope="module")
def cavity_patient(tmp_path_factory):
    """A preprocessed pair on an oblique grid: the post-op scan is the pre-op one with a sphere replaced by
    dark fluid (a cavity), a pre-op tumour mask given, no cavity mask; the svf registration of it."""
    import torch
    from testdata import oblique_affine, write_preproc

    from landmarkflow.imaging import spatial
    from landmarkflow.registration import svf

    rng = np.random.default_rng(3)
    shape = (40, 40, 40)
    pre = np.stack([ndimage.gaussian_filter(rng.standard_normal(shape), 2.0) for _ in range(2)])
    cavity = _ball((21, 19, 22), 6, shape)
    post = pre.copy()
    post[:, cavity] = pre.min()
    tumour = _ball((21, 19, 22), 5, shape)
    affine = oblique_affine(spacing=(1.0, 1.1, 1.2))
    brain = _ball((20, 20, 20), 17, shape)
    ids = ["a", "b", "c"]
    vox = np.array([[21, 19, 22], [8, 20, 20], [30, 28, 14]], float)  # "a": inside the cavity
    root = tmp_path_factory.mktemp("lesions")
    folder = write_preproc(root / "preproc", affine, {("pre", "t1"): pre[0], ("post", "t1"): post[0],
                                                      ("pre", "t2"): pre[1], ("post", "t2"): post[1]},
                           brain={"pre": brain, "post": brain}, lesions={"pre": tumour},
                           landmarks={("post", "expert"): (ids, spatial.voxel_to_world(vox, affine))})
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        svf.run_svf(folder.path, root / "svf", root / "svf.csv", {"levels": [4, 2], "iterations": [60, 40]},
                    seed=0, device="cpu", threads=1)
    finally:
        torch.set_num_threads(n)
    return root, folder, cavity, tumour


def test_a_partial_set_is_completed_from_the_registration_and_given_masks_win(cavity_patient):
    from landmarkflow.cohort.preproc_folder import PreprocFolder

    root, folder, cavity, tumour = cavity_patient
    out = root / "lesions"
    info = lesions.complete_lesions(folder.path, out, {"threshold_mm": 1.0, "min_ml": 0.05}, svf_dir=root / "svf")
    assert info["pre"]["source"] == "given" and info["post"]["source"] == "derived"
    assert json.loads((out / lesions.INFO).read_text()) == info
    assert {p.name for p in out.iterdir()} == {"pre_tumor.nii.gz", "post_resection.nii.gz", lesions.INFO, "qc.png"}
    given = read_image(out / "pre_tumor.nii.gz", dtype=None)
    np.testing.assert_array_equal(given.data > 0, tumour)  # the given mask, unchanged
    derived = read_image(out / "post_resection.nii.gz", dtype=None)
    np.testing.assert_allclose(derived.affine, folder.image("pre", "t1").affine, atol=1e-6)  # the oblique grid
    assert lesions.dice(derived.data > 0, cavity) >= 0.5
    assert info["post"]["volume_ml"] > 0.3 * cavity.sum() * 1.32 / 1000
    # landmark "a" lies inside the derived cavity: a warning, not an error
    assert any("landmark(s) a inside the derived cavity" in w for w in info["warnings"])
    # the stages read the lesion folder's masks through the preprocessed folder
    with_lesions = PreprocFolder(folder.path, lesions=out)
    assert with_lesions.has_lesion() and np.array_equal(with_lesions.lesion("post"), derived.data > 0)
    assert folder.lesion("post") is None and not PreprocFolder(folder.path).mask_path("post", "resection").exists()
    assert "resection derived" in lesions.describe(info) and "tumor given" in lesions.describe(info)


def test_a_study_on_a_workdir_reads_the_lesion_folder_beside_the_preprocessed_one(cavity_patient, tmp_path):
    import shutil

    from landmarkflow.cohort.preproc_folder import PreprocFolder
    from landmarkflow.core import layout

    root, folder, cavity, _ = cavity_patient
    pre_dir = tmp_path / layout.preproc("P1")
    shutil.copytree(folder.path, pre_dir)
    assert PreprocFolder.in_workdir(pre_dir).lesions is None  # no lesion folder yet: the manifest's masks
    assert PreprocFolder.in_workdir(pre_dir).lesion("post") is None
    lesions.complete_lesions(pre_dir, tmp_path / layout.lesions_dir("P1"), {"threshold_mm": 1.0, "min_ml": 0.05},
                             svf_dir=root / "svf")
    found = PreprocFolder.in_workdir(pre_dir)
    assert found.lesions == tmp_path / layout.lesions_dir("P1")
    assert lesions.dice(found.lesion("post"), cavity) >= 0.5  # the derived cavity


def test_without_derivation_or_svf_the_missing_mask_stays_missing(cavity_patient, tmp_path):
    root, folder, _, _ = cavity_patient
    for settings, svf_dir in (({"derive": False}, root / "svf"), ({}, None)):
        out = tmp_path / f"lesions-{len(settings)}"
        info = lesions.complete_lesions(folder.path, out, settings, svf_dir=svf_dir)
        assert info["post"]["source"] == "none" and not (out / "post_resection.nii.gz").exists()
        assert info["pre"]["source"] == "given"


def test_a_derived_mask_that_is_empty_is_written_and_warned_about(cavity_patient, tmp_path):
    root, folder, _, _ = cavity_patient
    info = lesions.complete_lesions(folder.path, tmp_path / "les", {"threshold_mm": 500.0}, svf_dir=root / "svf")
    assert info["post"]["source"] == "derived" and info["post"]["volume_ml"] == 0.0
    assert not read_image(tmp_path / "les" / "post_resection.nii.gz", dtype=None).data.any()
    assert any("the derived one is empty" in w for w in info["warnings"])


def test_a_missing_svf_map_is_a_clear_error(cavity_patient, tmp_path):
    from landmarkflow.core.errors import InputError

    _, folder, _, _ = cavity_patient
    (tmp_path / "svf").mkdir()
    with pytest.raises(InputError, match="consistency_post_mm.nii.gz: not found"):
        lesions.complete_lesions(folder.path, tmp_path / "les", {}, svf_dir=tmp_path / "svf")
    assert not (tmp_path / "les").exists()
