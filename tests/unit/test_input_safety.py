"""Issue 18: bad input that used to pass silently or with a misleading message; each case asserts its message."""

import gzip
import re

import nibabel as nib
import numpy as np
import pytest

from testdata import make_image, oblique_affine
from landmarkflow.imaging import spatial
from landmarkflow.core.files import write_table
from landmarkflow.imaging.image import read_image, write_image
from landmarkflow.io.landmarks import landmarks_frame, points_of, read_landmarks, write_landmarks
from landmarkflow.core.errors import InputError


def _nifti(path, shape=(16, 14, 10), affine=None, qform=None, dtype=np.int16):
    """A NIfTI file written with nibabel: sform = ``affine`` (code 1) and qform = ``qform`` or the same (code 1)."""
    affine = oblique_affine() if affine is None else affine
    img = nib.Nifti1Image(np.arange(np.prod(shape), dtype=dtype).reshape(shape) % 97, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine if qform is None else qform, code=1)
    nib.save(img, str(path))
    return path


def test_a_clean_nifti_still_reads(tmp_path):
    img = read_image(_nifti(tmp_path / "ok.nii.gz"))
    assert img.shape == (16, 14, 10) and np.allclose(img.affine, oblique_affine(), atol=1e-3)
    assert read_image(_nifti(tmp_path / "ok.nii")).shape == (16, 14, 10)


@pytest.mark.parametrize("change", ["shift", "rotation"])
def test_qform_and_sform_that_disagree_are_an_error(tmp_path, change):
    aff = oblique_affine()
    q = aff.copy()
    if change == "shift":
        q[:3, 3] += [10.0, 0, 0]
    else:
        q[:3, :3] = spatial.rotation_matrix((10.0, 0, 0)) @ q[:3, :3]
    path = _nifti(tmp_path / "two.nii.gz", affine=aff, qform=q)
    with pytest.raises(InputError, match=r"two.nii.gz: the NIfTI qform and sform disagree \(codes 1 and 1\): "
                                         r"they place the image's corners up to .* mm apart"):
        read_image(path)


def _gz_bytes(path):
    return bytearray(path.read_bytes())


def test_every_single_byte_flip_in_the_gzip_stream_is_caught(tmp_path):
    """One flipped byte anywhere in the compressed data (past the gzip header) fails the CRC, the length or
    the inflate; it used to pass in 8 of 10 cases with a few voxels changed."""
    path = _nifti(tmp_path / "img.nii.gz")
    raw = _gz_bytes(path)
    rng = np.random.default_rng(0)
    positions = rng.choice(np.arange(20, len(raw) - 8), 10, replace=False)
    for pos in positions:
        bad = raw.copy()
        bad[pos] ^= 0xFF
        out = tmp_path / f"flip{pos}.nii.gz"
        out.write_bytes(bytes(bad))
        with pytest.raises(InputError, match=rf"flip{pos}.nii.gz: (damaged gzip stream|the gzip stream ends early|not a readable (image|NIfTI))"):
            read_image(out)


def test_a_flipped_crc_is_caught(tmp_path):
    path = _nifti(tmp_path / "img.nii.gz")
    raw = _gz_bytes(path)
    raw[-8] ^= 0x01  # the stored CRC32 of the data
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"img.nii.gz: damaged gzip stream \(.*CRC.*\)"):
        read_image(path)


def _set_header(path, **fields):
    """Rewrite header fields of an uncompressed NIfTI-1 file in place."""
    img = nib.load(str(path))
    hdr = img.header.copy()
    for key, val in fields.items():
        hdr[key] = val
    data = bytearray(path.read_bytes())
    data[:348] = hdr.binaryblock
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("gz", [False, True])
def test_a_header_declaring_far_more_voxels_than_the_file_holds_names_both_sizes(tmp_path, gz):
    path = _nifti(tmp_path / "huge.nii")
    _set_header(path, dim=[3, 1024, 1024, 1024, 1, 1, 1, 1])
    if gz:
        gzpath = tmp_path / "huge.nii.gz"
        gzpath.write_bytes(gzip.compress(path.read_bytes()))
        path = gzpath
    with pytest.raises(InputError, match=r"huge.nii(.gz)?: the header declares 1024x1024x1024 voxels of int16 "
                                         r"\(2,147,483,.* bytes with the header\) but the file holds 4,832 bytes"):
        read_image(path)


def test_a_truncated_gzip_stream_is_named(tmp_path):
    path = _nifti(tmp_path / "cut.nii.gz")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=r"cut.nii.gz: the gzip stream ends early, after .* bytes; the header declares "
                                         r"16x14x10 voxels of int16"):
        read_image(path)


def test_a_zero_voxel_size_is_named(tmp_path):
    path = _nifti(tmp_path / "flat.nii", affine=np.diag([1.0, 1.0, 2.0, 1.0]))
    _set_header(path, pixdim=[1, 1.0, 0.0, 2.0, 1, 1, 1, 1])
    with pytest.raises(InputError, match=r"flat.nii: voxel size \(pixdim\) \[1.0, 0.0, 2.0\] mm is zero or not a number "
                                         r"along axis j; expected positive voxel sizes in mm"):
        read_image(path)


def test_an_nrrd_still_reads(tmp_path):
    path = make_image(tmp_path / "img.nrrd", affine=oblique_affine())
    assert read_image(path).shape == (12, 10, 8)


# ----------------------------------------------------------------------------- the manifest
from landmarkflow.cohort import manifest, validation  # noqa: E402


def _demo_manifest(tmp_path, demo_patient, extra_rows=(), drop=()):
    """A manifest of the session's demo patient (real anatomy, brain and lesion masks), written to tmp_path."""
    from landmarkflow.demo import synthetic

    folder, _ = demo_patient
    rows = synthetic.manifest_rows(["demo01"], folder, tmp_path)
    rows = rows[~rows["path"].str.endswith(tuple(drop))] if drop else rows
    path = tmp_path / "cohort.tsv"
    write_table(rows, path)
    with path.open("a") as f:
        f.writelines(line + "\n" for line in extra_rows)
    return path


def _copy_landmarks(demo_patient, tmp_path, name, transform):
    folder, _ = demo_patient
    lm = read_landmarks(folder / "demo01" / name)
    lm[["x", "y", "z"]] = transform(points_of(lm))
    out = tmp_path / name
    write_landmarks(lm, out)
    return out


def test_lps_post_op_landmarks_under_a_ras_header_are_an_error_that_says_lps(demo_patient, tmp_path):
    path = _demo_manifest(tmp_path, demo_patient)
    lps = _copy_landmarks(demo_patient, tmp_path, "post_landmarks_expert.csv", lambda p: p * [-1, -1, 1])
    _edit(path, "post_landmarks_expert.csv", str(lps), last=True)
    with pytest.raises(InputError) as exc:
        validation.validate_contents(manifest.load_manifest(path))
    msg = str(exc.value)
    # the post-op file against the pre-op ones: far apart as given, together once mirrored
    assert re.search(r"post_landmarks_expert.csv: the pre- and post-operative landmarks are \d+ mm apart \(median\) as "
                     r"given, \d+ mm once one file is mirrored to \(-x, -y, z\): is one of them in LPS", msg), msg


def test_lps_pre_op_files_next_to_ras_post_op_ones_are_caught(demo_patient, tmp_path):
    path = _demo_manifest(tmp_path, demo_patient)
    lps = _copy_landmarks(demo_patient, tmp_path, "pre_landmarks_expert.csv", lambda p: p * [-1, -1, 1])
    _edit(path, "pre_landmarks_expert.csv", str(lps), last=True)
    with pytest.raises(InputError, match=r"pre_landmarks_expert.csv and .*post_landmarks_expert.csv: the pre- and "
                                         r"post-operative landmarks are \d+ mm apart"):
        validation.validate_contents(manifest.load_manifest(path))


def test_every_file_in_lps_warns_that_the_mirrored_points_sit_at_the_lesion(demo_patient, tmp_path):
    """All files mirrored alike: they agree with each other and may well lie in the (symmetric) brain; the
    landmarks are placed around the lesion, and mirrored back they are."""
    path = _demo_manifest(tmp_path, demo_patient)
    for name in ("pre_landmarks_expert.csv", "pre_landmarks_expert2.csv", "post_landmarks_expert.csv"):
        _edit(path, name, str(_copy_landmarks(demo_patient, tmp_path, name, lambda p: p * [-1, -1, 1])), last=True)
    try:
        m = validation.validate_contents(manifest.load_manifest(path))
        said = "\n".join(m.warnings)
    except InputError as err:  # some mirrored points may also leave the brain: then it is an error, saying LPS
        said = str(err)
    assert re.search(r"pre_landmarks_expert.csv: .*(mirrored to \(-x, -y, z\)).*LPS", said), said


def test_landmarks_in_the_background_are_an_error(demo_patient, tmp_path):
    path = _demo_manifest(tmp_path, demo_patient)
    folder, _ = demo_patient
    pre = read_image(folder / "demo01" / "pre_t1ce.nii.gz")
    corner = spatial.voxel_to_world([[2, 2, 2]], pre.affine)[0]  # inside the image, outside the head
    lm = read_landmarks(folder / "demo01" / "pre_landmarks_expert2.csv")
    lm.loc[0, ["x", "y", "z"]] = corner
    write_landmarks(lm, tmp_path / "bg.csv")
    _edit(path, "pre_landmarks_expert2.csv", str(tmp_path / "bg.csv"), last=True)
    with pytest.raises(InputError, match=rf"bg.csv: landmark {lm.loc[0, 'landmark']} at RAS .* mm lies \d+\.\d mm outside "
                                         r"the pre-operative brain mask; expected a point on the anatomy"):
        validation.validate_contents(manifest.load_manifest(path))


def test_without_a_brain_mask_the_image_foreground_is_the_anatomy(small_cohort, tmp_path):
    m_path, folder = small_cohort
    img = read_image(folder / "p1" / "post_t1.nii.gz")
    img.data[:] = 0
    img.data[4:18, 4:16, 2:9] = 100 + np.arange(14 * 12 * 7).reshape(14, 12, 7) % 7  # a "head" with texture
    write_image(img, folder / "p1" / "post_t1.nii.gz")
    write_landmarks(landmarks_frame(["1", "2"], spatial.voxel_to_world([[10, 10, 5], [0, 0, 0]], img.affine)),
                       folder / "p1" / "post_lm.csv")
    with pytest.raises(InputError, match=r"post_lm.csv: landmark 2 at RAS .* lies .* mm outside the foreground of the "
                                         r"post-operative t1 image") as exc:
        validation.validate_contents(manifest.load_manifest(m_path))
    assert "landmark 1 " not in str(exc.value)


def _edit(path, old, new, last=False):
    text = path.read_text()
    if last:  # the path column: replace the file name with a path of its own
        lines = [(line.rsplit("\t", 1)[0] + "\t" + new) if line.endswith(old) else line for line in text.splitlines()]
        path.write_text("\n".join(lines) + "\n")
    else:
        path.write_text(text.replace(old, new))


def test_a_second_post_op_annotator_needs_the_config_to_say_which(small_cohort):
    m_path, folder = small_cohort
    (folder / "p1" / "post_lm2.csv").write_text((folder / "p1" / "post_lm.csv").read_text())
    with m_path.open("a") as f:
        f.write("P1\tpost\tlandmarks\tresident\tp1/post_lm2.csv\n")
    with pytest.raises(InputError, match=r"patient P1 \(rows .*\): post-operative landmarks of 2 annotators, expert "
                                         r"\(row 5\), resident \(row 7\): set landmarks.annotator"):
        manifest.load_manifest(m_path)
    m = manifest.load_manifest(m_path, annotator="resident")
    assert m.primary_annotator("P1") == "resident"
    assert m.primary_annotator("P1") != m.annotators("P1", "post")[0]  # not the first row
    with pytest.raises(InputError, match=r"no post-operative landmarks of the annotator 'Expert' \(config "
                                         r"landmarks.annotator\); the patient has expert, resident \(did you mean 'expert'\?\)"):
        manifest.load_manifest(m_path, annotator="Expert")


def test_a_long_landmark_identifier_is_an_error(small_cohort):
    m_path, folder = small_cohort
    long_id = "a" * 250
    lm = read_landmarks(folder / "p1" / "post_lm.csv")
    lm.loc[0, "landmark"] = long_id
    write_landmarks(lm, folder / "p1" / "post_lm.csv")
    with pytest.raises(InputError, match=r"post_lm.csv: landmark identifier 'aaaaaaaaaaaaaaaaaaaa'... has 250 characters; "
                                         r"at most 64 \(it becomes part of file names\)"):
        validation.validate_contents(manifest.load_manifest(m_path))
    _edit(m_path, "P1\t", "P" + "1" * 70 + "\t")
    with pytest.raises(InputError, match=r"row 2: patient 'P1111111111111111111'... has 71 characters"):
        manifest.load_manifest(m_path)


def test_a_modality_spelled_with_another_case_at_the_other_time_point(small_cohort):
    m_path, _ = small_cohort
    _edit(m_path, "P1\tpre\timage\tt1\t", "P1\tpre\timage\tT1\t")
    with pytest.raises(InputError, match=r"modality 'T1' \(pre, row 2\) and 't1' \(post, row 3\) differ only in case; "
                                         r"spell them the same \(did you mean 't1'\?\)"):
        manifest.load_manifest(m_path)


def test_comment_lines_are_skipped_and_rows_keep_their_line_numbers(small_cohort):
    m_path, _ = small_cohort
    lines = m_path.read_text().splitlines()
    m_path.write_text("\n".join(["# cohort of the study", lines[0], "# pre-op", *lines[1:3], "", "  # post-op", *lines[3:]]) + "\n")
    m = manifest.load_manifest(m_path)
    assert m.table["row"].tolist() == [4, 5, 8, 9, 10]
    _edit(m_path, "P1\tpost\tlandmarks", "P1\tpost\tlandmark")
    with pytest.raises(InputError, match=r"row 9: kind 'landmark' is not one of"):  # the file's line number
        manifest.load_manifest(m_path)


def test_ground_truth_identifiers_that_match_none_are_an_error_unless_allowed(small_cohort):
    m_path, folder = small_cohort
    lm = read_landmarks(folder / "p1" / "pre_lm.csv")
    lm["landmark"] = ["01", "02"]
    write_landmarks(lm, folder / "p1" / "pre_lm.csv")
    with pytest.raises(InputError, match=r"row 6: .*pre_lm.csv: none of the pre-operative landmark identifiers \(01, 02\) "
                                         r"is among the post-operative ones \(1, 2\); they differ in leading zeros or case "
                                         r"only \('01' -> '1', '02' -> '2'\).*set landmarks.unmatched_truth: warn"):
        validation.validate_contents(manifest.load_manifest(m_path))
    m = validation.validate_contents(manifest.load_manifest(m_path), unmatched_truth="warn")
    assert any("none of the pre-operative landmark identifiers" in w and "not scored" in w for w in m.warnings)


def test_cli_validate_prints_each_warning_once(small_cohort, capsys):
    from landmarkflow.cli import main

    m_path, _ = small_cohort
    _edit(m_path, "P1\tpost\tmask\tresection\tp1/post_resection.nii.gz\n", "")
    assert main(["validate", str(m_path)]) == 0
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("no post-operative resection mask") == 1


def test_an_input_error_in_a_job_is_one_message_without_traceback(tmp_path, capsys):
    from landmarkflow.core.logutil import log_to

    log = tmp_path / "job.log"
    with pytest.raises(SystemExit) as exc:
        with log_to(log):
            read_image(tmp_path / "missing.nii.gz")
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "landmarkflow: error: " in err and "missing.nii.gz: image not found" in err and "Traceback" not in err
    text = log.read_text()
    assert "missing.nii.gz: image not found" in text and "Traceback" not in text
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        with log_to(log):
            1 / 0
    assert "Traceback" in log.read_text()


# ----------------------------------------------------------------------------- issue 31: other tools' image files
@pytest.mark.parametrize("extra", [(1,), (1, 1)])
def test_a_3d_image_stored_with_extra_axes_of_length_one_is_read_with_a_note(tmp_path, extra):
    data = (np.arange(16 * 14 * 10).reshape(16, 14, 10) % 97).astype(np.int16)
    nib.save(nib.Nifti1Image(data.reshape(data.shape + extra), oblique_affine()), str(tmp_path / "x.nii.gz"))
    img = read_image(tmp_path / "x.nii.gz")
    assert img.shape == (16, 14, 10) and img.data.ndim == 3
    assert np.array_equal(img.data, data) and np.allclose(img.affine, oblique_affine(), atol=1e-3)
    assert f"stored with shape {(16, 14, 10) + extra}; read as the 3D image of shape (16, 14, 10)" in img.note
    assert read_image(_nifti(tmp_path / "plain.nii.gz")).note == ""


def test_an_rgb_nifti_is_an_error_that_names_the_file_and_says_colour(tmp_path):
    rgb = np.zeros((6, 7, 8), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, oblique_affine()), str(tmp_path / "screenshot.nii.gz"))
    with pytest.raises(InputError, match=r"screenshot.nii.gz: expected a 3D scalar \(grey-value\) image, got 3 components "
                                         r"per voxel \(a colour or vector image\)"):
        read_image(tmp_path / "screenshot.nii.gz")


@pytest.mark.parametrize("shape, hint", [((6, 7, 8, 1, 3), r"a 5D array: 3 values per voxel"),
                                         ((6, 7, 8, 3), r"a 4D series of 3 volumes; give one volume per file")])
def test_vector_and_4d_niftis_are_errors_that_say_what_the_extra_axes_hold(tmp_path, shape, hint):
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), oblique_affine()), str(tmp_path / "v.nii.gz"))
    with pytest.raises(InputError, match=rf"v.nii.gz: expected a 3D image, got size {re.escape(str(shape))} \({hint}"):
        read_image(tmp_path / "v.nii.gz")


def test_validation_warns_about_a_squeezed_image_and_stops_an_rgb_one_without_traceback(small_cohort, capsys):
    from landmarkflow.cli import main

    m_path, folder = small_cohort
    path = folder / "p1" / "post_t1.nii.gz"
    img = nib.load(str(path))
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[..., None, None], img.affine), str(path))
    m = validation.validate_contents(manifest.load_manifest(m_path))
    assert any("post_t1.nii.gz: stored with shape" in w and "read as the 3D image" in w for w in m.warnings)
    rgb = np.zeros(img.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, img.affine), str(path))
    assert main(["validate", str(m_path)]) != 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "post_t1.nii.gz: expected a 3D scalar (grey-value) image" in text and "Traceback" not in text


def test_a_qfac_of_zero_is_said_once_per_file_by_the_validation(tmp_path, capfd):
    """Issue 43: nibabel printed its qfac message at every read of such a file (dozens of times per run); now the
    validation warns once per file, and reading says nothing on the console."""
    from landmarkflow.cohort.manifest import load_manifest
    from landmarkflow.cohort.validation import validate_contents

    affine = np.diag([1.2, 1.0, 1.5, 1.0])  # no flip: qfac 1, so 0 (read as 1) keeps the geometry
    for tp in ("pre", "post"):
        make_image(tmp_path / f"{tp}.nii.gz", (20, 18, 12), affine, rng=np.random.default_rng(len(tp)))
    path = tmp_path / "pre.nii.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[76:80] = np.float32(0).tobytes()  # pixdim[0] of a little-endian NIfTI-1 header (nibabel would write 1)
    path.write_bytes(gzip.compress(bytes(raw)))
    assert nib.Nifti1Header.from_fileobj(gzip.open(path), check=False)["pixdim"][0] == 0  # as written
    write_landmarks(landmarks_frame(["1"], [[10.0, 9.0, 9.0]]), tmp_path / "post.csv")
    (tmp_path / "cohort.tsv").write_text("patient\ttimepoint\tkind\tname\tpath\nP\tpre\timage\tt1\tpre.nii.gz\n"
                                         "P\tpost\timage\tt1\tpost.nii.gz\nP\tpost\tlandmarks\texpert\tpost.csv\n")
    capfd.readouterr()
    m = validate_contents(load_manifest(tmp_path / "cohort.tsv"))
    said = [w for w in m.warnings if "qfac" in w]
    assert len(said) == 1 and "row 2" in said[0] and "pixdim[0] (qfac) is 0, not 1 or -1" in said[0], m.warnings
    read_image(path)
    assert "qfac" not in "".join(capfd.readouterr())  # nibabel's own message held back
