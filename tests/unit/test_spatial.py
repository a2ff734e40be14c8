"""Coordinates: voxel <-> RAS <-> LPS on images with non-trivial direction, origin and spacing."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from testdata import DATA, oblique_affine
from landmarkflow.imaging import spatial
from landmarkflow.core.errors import InputError
from landmarkflow.imaging.image import Image, read_header, read_image, write_image


def test_round_trip_voxel_ras_lps_voxel(oblique):
    rng = np.random.default_rng(0)
    ijk = rng.uniform(-2, 30, (50, 3))
    ras = spatial.voxel_to_world(ijk, oblique)
    lps = spatial.ras_to_lps(ras)
    spacing, origin, direction = spatial.itk_from_affine(oblique)
    # back to voxels through the ITK (LPS) geometry, independently of the RAS affine
    back = np.linalg.solve(direction * spacing, (lps - origin).T).T
    np.testing.assert_allclose(back, ijk, atol=1e-9)
    np.testing.assert_allclose(spatial.world_to_voxel(spatial.lps_to_ras(lps), oblique), ijk, atol=1e-9)


def test_ras_lps_flip_is_an_involution():
    p = np.array([[1.0, -2.0, 3.0]])
    np.testing.assert_array_equal(spatial.ras_to_lps(p), [[-1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(spatial.lps_to_ras(spatial.ras_to_lps(p)), p)
    assert spatial.ras_to_lps([1.0, 2.0, 3.0]).shape == (3,)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_written_image_matches_itk_physical_points(tmp_path, oblique, suffix):
    """Our affine agrees with ITK's own index -> physical point mapping (LPS) for NIfTI and NRRD."""
    path = tmp_path / f"img{suffix}"
    data = np.arange(7 * 6 * 5, dtype=np.float32).reshape(7, 6, 5)
    write_image(Image(data, oblique), path)
    img = read_image(path)
    np.testing.assert_allclose(img.affine, oblique, atol=1e-5)
    np.testing.assert_array_equal(img.data, data)
    itk = sitk.ReadImage(str(path))
    for ijk in [(0, 0, 0), (6, 5, 4), (3, 1, 2)]:
        lps_itk = np.array(itk.TransformIndexToPhysicalPoint(ijk))
        np.testing.assert_allclose(spatial.ras_to_lps(spatial.voxel_to_world(ijk, img.affine)), lps_itk, atol=1e-4)
        # array index order: data[i, j, k] is ITK's pixel (i, j, k)
        assert img.data[ijk] == itk[ijk]


def test_nifti_affine_agrees_with_nibabel(tmp_path, oblique):
    path = tmp_path / "img.nii.gz"
    write_image(Image(np.zeros((5, 4, 3), np.float32), oblique), path)
    np.testing.assert_allclose(nib.load(path).affine, oblique, atol=1e-5)
    # and the other way: a file written by nibabel reads back with the same affine
    path2 = tmp_path / "nib.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 4, 3), np.float32), oblique), path2)
    np.testing.assert_allclose(read_image(path2).affine, oblique, atol=1e-5)
    np.testing.assert_allclose(read_header(path2)[1], oblique, atol=1e-5)


def test_real_nrrd_with_flipped_axis():
    """brain1 (pyradiomics): LPS space, y axis flipped, 0.78 x 0.78 x 6.5 mm, origin (-99.6, 99.6, -78)."""
    img = read_image(DATA / "pyradiomics-brain" / "brain1_image.nrrd")
    assert img.shape == (256, 256, 25)
    np.testing.assert_allclose(img.spacing, [0.78125, 0.78125, 6.5], atol=1e-6)
    # header: space origin (-99.609375, 99.609375, -78) LPS; directions +x, -y, +z (LPS)
    origin_lps = np.array([-99.609375, 99.609375, -78.0])
    np.testing.assert_allclose(spatial.ras_to_lps(img.origin), origin_lps, atol=1e-4)
    ijk = np.array([100, 40, 10])
    expected_lps = origin_lps + np.array([0.78125 * 100, -0.78125 * 40, 6.5 * 10])
    np.testing.assert_allclose(spatial.ras_to_lps(spatial.voxel_to_world(ijk, img.affine)), expected_lps, atol=1e-4)
    np.testing.assert_allclose(spatial.world_to_voxel(spatial.lps_to_ras(expected_lps), img.affine), ijk, atol=1e-6)


def test_inside_image_uses_half_voxel_border(oblique):
    shape = (10, 10, 10)
    pts = spatial.voxel_to_world([[-0.49, 0, 0], [-0.51, 0, 0], [9.49, 9, 9], [9.51, 9, 9]], oblique)
    assert spatial.inside_image(pts, oblique, shape).tolist() == [True, False, True, False]


def test_sheared_affine_is_rejected():
    a = np.eye(4)
    a[0, 1] = 0.5
    with pytest.raises(ValueError, match="shear"):
        spatial.itk_from_affine(a)


def test_bad_affines_are_rejected():
    with pytest.raises(ValueError, match="4x4"):
        spatial.check_affine(np.eye(3))
    with pytest.raises(ValueError, match="singular"):
        spatial.check_affine(np.diag([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        spatial.voxel_to_world([[1, 2]], np.eye(4))


def test_rotation_matrix_is_orthonormal():
    r = spatial.rotation_matrix([10, -20, 30])
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(r), 1.0)
    assert oblique_affine().shape == (4, 4)


def test_nifti_nan_survives_reading(tmp_path, oblique):
    """ITK's NIfTI reader turns NaN into 0; ours must not hide them."""
    data = np.ones((4, 4, 4), np.float32)
    data[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(data, oblique), tmp_path / "nan.nii.gz")
    assert np.isnan(read_image(tmp_path / "nan.nii.gz").data[1, 2, 3])


def test_nifti_with_disagreeing_qform_and_sform_is_an_error(tmp_path, oblique):
    """A sheared sform: nibabel uses it, ITK (and so ANTs) falls back to the qform."""
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), oblique)
    sheared = oblique.copy()
    sheared[0, 1] += 0.3
    img.set_qform(oblique, code=1)
    img.set_sform(sheared, code=1)
    nib.save(img, tmp_path / "bad.nii.gz")
    with pytest.raises(InputError, match="qform and sform disagree"):
        read_image(tmp_path / "bad.nii.gz")
