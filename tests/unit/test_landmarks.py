"""Landmark CSV reading/writing, errors that name the file and line, and the BraTS-Reg adapter."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from landmarkflow.imaging import spatial
from landmarkflow.core.files import atomic_path
from landmarkflow.imaging.image import read_header, read_image
from landmarkflow.io.brats import read_brats_landmarks, write_brats_landmarks
from landmarkflow.io.landmarks import landmarks_frame, points_of, read_landmarks, write_landmarks
from landmarkflow.core.errors import InputError


def test_round_trip_keeps_string_ids_and_extra_columns(tmp_path):
    df = landmarks_frame(["a1", "7"], [[1.5, -2.25, 3.0], [4.0, 5.0, -6.125]], spread_mm=[0.5, 1.0])
    write_landmarks(df, tmp_path / "lm.csv")
    assert (tmp_path / "lm.csv").read_text().splitlines()[0] == "landmark,x,y,z,spread_mm"
    back = read_landmarks(tmp_path / "lm.csv")
    assert back["landmark"].tolist() == ["a1", "7"]
    np.testing.assert_allclose(points_of(back), points_of(df))
    assert "spread_mm" in back.columns


@pytest.mark.parametrize(
    "text, match",
    [
        ("id,x,y,z\n1,1,2,3\n", r"lacks column\(s\) landmark"),
        ("landmark,x,y\n1,1,2\n", r"lacks column\(s\) z"),
        ("landmark,x,y,z\n", "no landmarks"),
        ("landmark,x,y,z\n1,1,2,3\n2,1,abc,3\n", r"line 3: y='abc' is not a number \(landmark 2\)"),
        ("landmark,x,y,z\n1,1,2,nan\n", r"line 2: z='nan' is not a finite number"),
        ("landmark,x,y,z\n1,1,2,\n", r"line 2: z='' is not a number"),
        ("landmark,x,y,z\n1,1,2,3\n1,4,5,6\n", r"landmark '1' appears more than once \(lines \[2, 3\]\)"),
        ("Landmark,X,Y,Z\n1,1,2,3\n", "looks like a BraTS-Reg file"),
    ],
)
def test_bad_landmark_files_name_the_problem(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=match) as exc:
        read_landmarks(path)
    assert str(path) in str(exc.value)


def test_missing_landmark_file(tmp_path):
    with pytest.raises(InputError, match="landmark file not found"):
        read_landmarks(tmp_path / "nope.csv")


def test_landmark_outside_image_is_an_error(tmp_path, oblique):
    shape = (10, 10, 10)
    inside = spatial.voxel_to_world([5, 5, 5], oblique)
    write_landmarks(landmarks_frame(["1", "2"], [inside, [500.0, 0, 0]]), tmp_path / "lm.csv")
    with pytest.raises(InputError, match=r"landmark 2 at RAS \(500.0, 0.0, 0.0\) mm lies outside"):
        read_landmarks(tmp_path / "lm.csv", image_shape=shape, image_affine=oblique)


def _brats_grid_image(path):
    """A header-true BraTS-Reg image: 240x240x155, 1 mm, identity direction, origin (0, -239, 0) LPS."""
    img = sitk.Image([240, 240, 155], sitk.sitkUInt8)
    img.SetOrigin((0.0, -239.0, 0.0))
    sitk.WriteImage(img, str(path), useCompression=True)
    return path


def test_brats_landmarks_map_to_voxel_y_plus_239(tmp_path):
    grid = read_header(_brats_grid_image(tmp_path / "BraTSReg_001_00_0000_t1ce.nii.gz"))
    (tmp_path / "lm.csv").write_text("Landmark,X,Y,Z\n1,120,-100,70\n2,33.5,-200.25,12\n")
    lm = read_brats_landmarks(tmp_path / "lm.csv")
    vox = spatial.world_to_voxel(points_of(lm), grid[1])
    np.testing.assert_allclose(vox, [[120, 139, 70], [33.5, 38.75, 12]], atol=1e-6)
    # RAS in our file: x and y negated
    np.testing.assert_allclose(points_of(lm)[0], [-120, 100, 70])
    write_brats_landmarks(lm, tmp_path / "back.csv")
    back = pd.read_csv(tmp_path / "back.csv")
    assert list(back.columns) == ["Landmark", "X", "Y", "Z"]
    np.testing.assert_allclose(back[["X", "Y", "Z"]].to_numpy(), [[120, -100, 70], [33.5, -200.25, 12]])


def test_brats_reader_rejects_our_format(tmp_path):
    (tmp_path / "lm.csv").write_text("landmark,x,y,z\n1,1,2,3\n")
    with pytest.raises(InputError, match="not a BraTS-Reg landmark header"):
        read_brats_landmarks(tmp_path / "lm.csv")


def test_unreadable_image_is_named(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="broken.nii.gz: not a readable image"):
        read_image(bad)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.tsv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_the_next_writer_removes_what_a_killed_writer_left(tmp_path):
    """Issue 31: SIGKILL leaves temporary files; the next writer of the same output removes them (and only theirs)."""
    from landmarkflow.core.files import atomic_dir, write_table
    import pandas as pd

    stale = [tmp_path / ".out.tsv.k3j_x9ab.part.tsv", tmp_path / ".models.a1b2c3d4.part", tmp_path / ".models.c3d4e5f6.old"]
    stale[0].write_text("half")
    for folder in stale[1:]:
        folder.mkdir()
        (folder / "1.pt").write_text("half")
    others = [tmp_path / ".other.tsv.zz12ab34.part.tsv",  # another output's
              tmp_path / ".models.resume.pt.ab12cd34.part.pt"]  # the temporary file of models.resume.pt, not of models
    for other in others:
        other.write_text("another output's")
    write_table(pd.DataFrame({"a": [1]}), tmp_path / "out.tsv")
    with atomic_dir(tmp_path / "models") as tmp:
        (tmp / "1.pt").write_text("whole")
    assert not any(p.exists() for p in stale) and all(other.exists() for other in others)
    assert (tmp_path / "models" / "1.pt").read_text() == "whole" and (tmp_path / "out.tsv").exists()


def test_sigterm_stops_a_job_with_one_log_line_and_no_temporary_file(tmp_path):
    """Issue 31: SIGTERM (Snakemake stopping, a scheduler's limit) stops the job where it is, removes its
    unfinished outputs and says so; the exit status is 128 + 15."""
    import subprocess
    import sys

    code = f"""
import os, signal, time
from landmarkflow.core.files import atomic_path
from landmarkflow.core.logutil import log_to
with log_to({str(tmp_path / 'job.log')!r}):
    with atomic_path({str(tmp_path / 'out.tsv')!r}) as tmp:
        tmp.write_text("half")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 128 + 15, res.stderr
    assert "landmarkflow: stopped by SIGTERM" in res.stderr and "Traceback" not in res.stderr
    log = (tmp_path / "job.log").read_text()
    assert "STOPPED: the job received SIGTERM" in log and "Traceback" not in log
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.log"]
