"""BraTS-Reg folder -> manifest, with the landmark files converted to RAS."""

import numpy as np
import pytest
import SimpleITK as sitk

from landmarkflow.io import brats
from landmarkflow.cohort import manifest, validation
from landmarkflow.imaging import spatial
from landmarkflow.imaging.image import read_header
from landmarkflow.io.landmarks import points_of, read_landmarks
from landmarkflow.core.errors import InputError


def _case(root, case, with_followup_landmarks=True):
    d = root / case
    d.mkdir(parents=True)
    for tp, days in (("00", "0000"), ("01", "0120")):
        for mod in ("t1ce", "flair"):
            img = sitk.Image([240, 240, 155], sitk.sitkInt16)
            img.SetOrigin((0.0, -239.0, 0.0))
            arr = np.zeros((155, 240, 240), np.int16)  # (z, y, x): a block of "tissue" around the landmarks
            arr[30:120, 50:200, 40:200] = 100
            arr[70, 100, 120] = 110 + len(tp + mod) + int(days)  # not constant inside, and no two scans the same
            img = sitk.GetImageFromArray(arr)
            img.SetOrigin((0.0, -239.0, 0.0))
            sitk.WriteImage(img, str(d / f"{case}_{tp}_{days}_{mod}.nii.gz"), useCompression=True)
        if tp == "00" or with_followup_landmarks:
            (d / f"{case}_{tp}_{days}_landmarks.csv").write_text("Landmark,X,Y,Z\n1,120,-100,70\n2,80,-150,60\n")
    return d


def test_brats_folder_to_valid_manifest(tmp_path):
    root = tmp_path / "brats"
    _case(root, "BraTSReg_001")
    _case(root, "BraTSReg_002", with_followup_landmarks=False)
    out = tmp_path / "cohort"
    df = brats.make_manifest(root, out)
    assert df["patient"].unique().tolist() == ["BraTSReg_001"]  # 002 has no follow-up landmarks
    m = validation.validate_contents(manifest.load_manifest(out / "cohort.tsv"))
    assert sorted(m.images("BraTSReg_001", "pre")) == ["flair", "t1ce"]
    assert m.annotators("BraTSReg_001", "post") == ["expert"]
    lm = read_landmarks(m.path("BraTSReg_001", "post", "landmarks", "expert"))
    _, affine = read_header(m.images("BraTSReg_001", "post")["t1ce"])
    # BraTS-Reg convention: voxel index = (X, Y + 239, Z)
    np.testing.assert_allclose(spatial.world_to_voxel(points_of(lm), affine), [[120, 139, 70], [80, 89, 60]], atol=1e-6)


def test_brats_folder_without_cases(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no BraTSReg_\\* case folders"):
        brats.make_manifest(tmp_path / "empty", tmp_path / "out")


def test_brats_cli(tmp_path, capsys):
    from landmarkflow.cli import main

    _case(tmp_path / "b", "BraTSReg_007")
    assert main(["brats-manifest", str(tmp_path / "b" / "BraTSReg_007"), "--out", str(tmp_path / "o")]) == 0
    assert "1 case(s)" in capsys.readouterr().out
    assert (tmp_path / "o" / "landmarks" / "BraTSReg_007_post.csv").read_text().startswith("landmark,x,y,z")
