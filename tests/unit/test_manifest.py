"""Manifest loading and validation: every problem named with its row and file."""

from pathlib import Path

import numpy as np
import pytest

from testdata import make_image
from landmarkflow.cohort import manifest, validation
from landmarkflow.imaging import spatial
from landmarkflow.imaging.image import Image, read_image, write_image
from landmarkflow.io.landmarks import landmarks_frame, read_landmarks, write_landmarks
from landmarkflow.core.errors import InputError


def _edit(path, old, new):
    path.write_text(path.read_text().replace(old, new))


def _append(path, line):
    path.write_text(path.read_text() + line + "\n")


def test_valid_manifest_loads_and_validates(small_cohort):
    m_path, _ = small_cohort
    m = validation.validate_contents(manifest.load_manifest(m_path))
    assert m.patients == ["P1"]
    assert m.common_modalities("P1") == ["t1"]
    assert m.reference_modality("P1") == "t1"
    assert m.annotators("P1", "pre") == ["expert"]
    assert m.table["row"].tolist() == [2, 3, 4, 5, 6]
    assert m.warnings == []


def test_validate_patient_writes_its_slice_and_the_cohort_gathers_them(small_cohort, tmp_path):
    m_path, _ = small_cohort
    m = manifest.load_manifest(m_path)
    out = tmp_path / "out"
    validation.validate_patient(manifest.patient_rows(m, "P1"), m_path, out / "P1.tsv", out / "P1_warnings.tsv")
    validation.gather_validation([out / "P1.tsv"], [out / "P1_warnings.tsv"], out / "manifest.tsv", out / "warnings.tsv")
    text = (out / "manifest.tsv").read_text().splitlines()
    assert text[0] == "patient\ttimepoint\tkind\tname\tpath\trow"
    assert len(text) == 6
    # the slice reads from anywhere: absolute paths, the manifest's row numbers
    piece = manifest.load_manifest(out / "P1.tsv")
    assert all(Path(p).is_absolute() for p in piece.table["path"])
    assert piece.table["path"].map(lambda p: Path(p).name).tolist() == m.table["path"].map(lambda p: Path(p).name).tolist()


def test_missing_file_names_row_and_path(small_cohort):
    m_path, folder = small_cohort
    (folder / "p1" / "pre_t1.nii.gz").unlink()
    with pytest.raises(InputError, match=r"cohort.tsv, row 2: file .*p1/pre_t1.nii.gz not found"):
        manifest.load_manifest(m_path)
    # deferred files (made by the workflow) are not checked at load time
    manifest.load_manifest(m_path, check_files=lambda p: not p.name.startswith("pre_t1"))


@pytest.mark.parametrize(
    "old, new, match",
    [
        ("P1\tpre\timage", "P1\tbefore\timage", r"row 2: timepoint 'before' is not one of pre, post"),
        ("P1\tpost\tmask", "P1\tpost\tmsk", r"row 4: kind 'msk' is not one of image, mask, landmarks \(did you mean 'mask'\?\)"),
        ("mask\tresection", "mask\tresektion", r"row 4: mask name 'resektion' is not one of .*did you mean 'resection'"),
        ("P1\tpost\tmask\tresection", "P1\tpre\tmask\tresection", r"row 4: a resection mask belongs to the post-operative scan"),
        ("P1\tpre\timage", "P 1\tpre\timage", r"row 2: patient 'P 1' must match"),
    ],
)
def test_bad_values_are_named(small_cohort, old, new, match):
    m_path, _ = small_cohort
    _edit(m_path, old, new)
    with pytest.raises(InputError, match=match):
        manifest.load_manifest(m_path)


def test_patient_without_post_landmarks(small_cohort):
    m_path, _ = small_cohort
    _edit(m_path, "P1\tpost\tlandmarks\texpert\tp1/post_lm.csv\n", "")
    with pytest.raises(InputError, match=r"patient P1 \(rows 2, 3, 4, 5\): no post-operative landmark file"):
        manifest.load_manifest(m_path)


def test_no_common_modality(small_cohort):
    m_path, _ = small_cohort
    _edit(m_path, "P1\tpost\timage\tt1", "P1\tpost\timage\tflair")
    with pytest.raises(InputError, match=r"no modality common to both time points \(pre: t1; post: flair\)"):
        manifest.load_manifest(m_path)


def test_missing_timepoint_image(small_cohort):
    m_path, _ = small_cohort
    _edit(m_path, "P1\tpre\timage\tt1\tp1/pre_t1.nii.gz\n", "")
    with pytest.raises(InputError, match="patient P1 .*: no pre-operative image"):
        manifest.load_manifest(m_path)


def test_duplicate_rows(small_cohort):
    m_path, _ = small_cohort
    _append(m_path, "P1\tpre\timage\tt1\tp1/post_t1.nii.gz")
    with pytest.raises(InputError) as exc:
        manifest.load_manifest(m_path)
    msg = str(exc.value)
    assert "rows 2, 7: duplicate entry patient=P1 timepoint=pre kind=image name=t1" in msg
    assert "rows 3, 7: the same file" in msg
    assert msg.startswith("2 problem(s)")


def test_missing_column(tmp_path):
    p = tmp_path / "m.tsv"
    p.write_text("patient,timepoint,kind,name,path\nP1,pre,image,t1,x.nii.gz\n")
    with pytest.raises(InputError, match=r"missing column\(s\) .*is the file tab separated\?"):
        manifest.load_manifest(p)


def test_several_problems_reported_together(small_cohort):
    m_path, _ = small_cohort
    _edit(m_path, "P1\tpre\timage", "P1\tbefore\timage")
    _edit(m_path, "p1/post_lm.csv", "p1/missing.csv")
    with pytest.raises(InputError) as exc:
        manifest.load_manifest(m_path)
    assert "row 2: timepoint 'before'" in str(exc.value)
    assert "row 5: file" in str(exc.value) and "missing.csv not found" in str(exc.value)


def test_landmark_file_with_wrong_header_is_named_with_its_row(small_cohort):
    m_path, folder = small_cohort
    (folder / "p1" / "post_lm.csv").write_text("id,x,y,z\n1,0,0,0\n")
    m = manifest.load_manifest(m_path)
    with pytest.raises(InputError, match=r"cohort.tsv, row 5: .*post_lm.csv: header id,x,y,z lacks column\(s\) landmark"):
        validation.validate_contents(m)


def test_landmark_file_with_non_numeric_values(small_cohort):
    m_path, folder = small_cohort
    (folder / "p1" / "pre_lm.csv").write_text("landmark,x,y,z\n1,1.0,two,3\n")
    with pytest.raises(InputError, match=r"row 6: .*pre_lm.csv, line 2: y='two' is not a number"):
        validation.validate_contents(manifest.load_manifest(m_path))


def test_landmark_outside_image(small_cohort):
    m_path, folder = small_cohort
    write_landmarks(landmarks_frame(["1"], [[900.0, 0, 0]]), folder / "p1" / "post_lm.csv")
    with pytest.raises(InputError, match=r"row 5: .*landmark 1 at RAS \(900.0, 0.0, 0.0\) mm lies outside the post-operative t1 image"):
        validation.validate_contents(manifest.load_manifest(m_path))


def test_landmark_inside_resection_mask(small_cohort):
    m_path, folder = small_cohort
    aff = read_image(folder / "p1" / "post_resection.nii.gz").affine
    write_landmarks(landmarks_frame(["1", "2"], spatial.voxel_to_world([[3, 3, 3], [12, 10, 6]], aff)), folder / "p1" / "post_lm.csv")
    with pytest.raises(InputError, match=r"row 5: .*landmark 1 lies inside the resection mask"):
        validation.validate_contents(manifest.load_manifest(m_path))


def test_nan_image(small_cohort):
    m_path, folder = small_cohort
    img = read_image(folder / "p1" / "pre_t1.nii.gz")
    img.data[3, 4, 5] = np.nan
    img.data[0, 0, 0] = np.inf
    write_image(img, folder / "p1" / "pre_t1.nii.gz")
    with pytest.raises(InputError, match=r"row 2: .*pre_t1.nii.gz has 2 NaN or infinite voxels"):
        validation.validate_contents(manifest.load_manifest(m_path))


def test_empty_and_full_masks(small_cohort):
    m_path, folder = small_cohort
    aff = read_image(folder / "p1" / "post_t1.nii.gz").affine
    write_image(Image(np.zeros((20, 18, 10), np.uint8), aff), folder / "p1" / "post_resection.nii.gz")
    with pytest.raises(InputError, match=r"row 4: .*post_resection.nii.gz: the mask is empty"):
        validation.validate_contents(manifest.load_manifest(m_path))
    write_image(Image(np.ones((20, 18, 10), np.uint8), aff), folder / "p1" / "post_resection.nii.gz")
    with pytest.raises(InputError, match="covers the whole image"):
        validation.validate_contents(manifest.load_manifest(m_path))


def test_mask_on_another_grid(small_cohort):
    m_path, folder = small_cohort
    mask = np.zeros((20, 18, 10), np.uint8)
    mask[1, 1, 1] = 1
    write_image(Image(mask, np.diag([1.0, 1.0, 1.0, 1.0])), folder / "p1" / "post_resection.nii.gz")
    with pytest.raises(InputError, match=r"row 4: .*mask grid .* matches none of the time point's images"):
        validation.validate_contents(manifest.load_manifest(m_path))


def test_unreadable_image_in_manifest(small_cohort):
    m_path, folder = small_cohort
    (folder / "p1" / "post_t1.nii.gz").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"row 3: .*post_t1.nii.gz: not a readable image"):
        validation.validate_contents(manifest.load_manifest(m_path))


def test_warnings_for_missing_resection_and_one_sided_modality(small_cohort):
    m_path, folder = small_cohort
    _edit(m_path, "P1\tpost\tmask\tresection\tp1/post_resection.nii.gz\n", "")
    make_image(folder / "p1" / "pre_flair.nii.gz", (20, 18, 10), read_image(folder / "p1" / "pre_t1.nii.gz").affine)
    _append(m_path, "P1\tpre\timage\tflair\tp1/pre_flair.nii.gz")
    m = validation.validate_contents(manifest.load_manifest(m_path))
    assert any("no post-operative resection mask: one is derived" in w for w in m.warnings)
    assert any("modalities flair exist at one time point only" in w for w in m.warnings)


def test_cli_validate_exit_code(small_cohort, capsys):
    from landmarkflow.cli import main

    m_path, folder = small_cohort
    assert main(["validate", str(m_path)]) == 0
    assert "all checks passed" in capsys.readouterr().out
    (folder / "p1" / "post_lm.csv").unlink()
    assert main(["validate", str(m_path)]) == 2
    assert "post_lm.csv not found" in capsys.readouterr().err


def test_landmark_labels_with_spaces_are_kept_and_mapped_to_identifiers(small_cohort):
    """Issue 30: labels as users rename points in Slicer ("L 1") were rejected; they are now kept in a label
    column and mapped to identifiers for file names (L_1). Two labels that would give one identifier stop."""
    m_path, folder = small_cohort
    aff = read_image(folder / "p1" / "post_t1.nii.gz").affine
    pts = spatial.voxel_to_world([[12, 10, 6], [14, 12, 7]], aff)
    write_landmarks(landmarks_frame(["L 1", "ACA, left"], pts), folder / "p1" / "post_lm.csv")
    lm = read_landmarks(folder / "p1" / "post_lm.csv")
    assert lm["landmark"].tolist() == ["L_1", "ACA_left"] and lm["label"].tolist() == ["L 1", "ACA, left"]
    write_landmarks(landmarks_frame(["L 1", "L_1"], pts), folder / "p1" / "post_lm.csv")
    with pytest.raises(InputError, match=r"post_lm.csv: the labels 'L 1' and 'L_1' both become the identifier 'L_1'"):
        validation.validate_contents(manifest.load_manifest(m_path))


def test_configured_modalities_must_exist_at_both_time_points(small_cohort):
    m_path, folder = small_cohort
    make_image(folder / "p1" / "pre_flair.nii.gz", (20, 18, 10), read_image(folder / "p1" / "pre_t1.nii.gz").affine)
    _append(m_path, "P1\tpre\timage\tflair\tp1/pre_flair.nii.gz")  # flair before surgery only
    m = manifest.load_manifest(m_path)
    m.check_modalities({"agent.modalities": [], "pin.modalities": ["t1"]})  # fine: [] = the reference
    with pytest.raises(InputError) as err:
        m.check_modalities({"agent.modalities": ["t1", "flair"], "ants.modalities": ["t1ce"]})
    msg = str(err.value)
    assert "cohort.tsv" in msg or str(m_path.name) in msg
    assert "agent.modalities ['flair']: patient P1 has t1 at both time points" in msg
    assert "ants.modalities ['t1ce']: patient P1 has t1" in msg
