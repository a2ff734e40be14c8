from pathlib import Path

import numpy as np
import pytest

from landmarkflow import io, spatial

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


def oblique_affine(spacing=(0.8, 1.3, 2.5), angles=(12.0, -7.0, 25.0), origin=(31.5, -47.25, 12.0), flip_x=True):
    """A RAS affine with rotated, partly flipped axes, anisotropic spacing and an origin."""
    rot = spatial.rotation_matrix(angles)
    if flip_x:
        rot = rot @ np.diag([-1.0, 1.0, 1.0])
    a = np.eye(4)
    a[:3, :3] = rot * np.asarray(spacing)
    a[:3, 3] = origin
    return a


@pytest.fixture
def oblique():
    return oblique_affine()


@pytest.fixture(scope="session")
def demo_patient(tmp_path_factory):
    """One generated demo patient (session-wide: generation takes ~10 s)."""
    from landmarkflow import synthetic

    out = tmp_path_factory.mktemp("demo")
    paths = synthetic.make_patient("demo01", out, seed=7)
    return out, paths


def write_image(path, shape=(12, 10, 8), affine=None, value=None, dtype=np.float32, rng=None):
    affine = np.eye(4) if affine is None else affine
    if value is None:
        rng = rng or np.random.default_rng(0)
        data = rng.normal(100, 10, shape).astype(dtype)
    else:
        data = np.full(shape, value, dtype=dtype)
    io.write_image(io.Image(data, affine), path)
    return path


@pytest.fixture
def small_cohort(tmp_path):
    """A valid one-patient manifest on small images with an oblique geometry; returns (manifest, folder)."""
    aff = oblique_affine()
    shape = (20, 18, 10)
    d = tmp_path / "p1"
    d.mkdir()
    for tp in ("pre", "post"):
        write_image(d / f"{tp}_t1.nii.gz", shape, aff, rng=np.random.default_rng(1 if tp == "pre" else 2))
    mask = np.zeros(shape, np.uint8)
    mask[2:6, 2:6, 2:5] = 1
    io.write_image(io.Image(mask, aff), d / "post_resection.nii.gz")
    centre = spatial.voxel_to_world([[12, 10, 6], [14, 12, 7]], aff)
    io.write_landmarks(io.landmarks_frame(["1", "2"], centre), d / "post_lm.csv")
    io.write_landmarks(io.landmarks_frame(["1", "2"], centre + 1.0), d / "pre_lm.csv")
    rows = [
        "patient\ttimepoint\tkind\tname\tpath",
        "P1\tpre\timage\tt1\tp1/pre_t1.nii.gz",
        "P1\tpost\timage\tt1\tp1/post_t1.nii.gz",
        "P1\tpost\tmask\tresection\tp1/post_resection.nii.gz",
        "P1\tpost\tlandmarks\texpert\tp1/post_lm.csv",
        "P1\tpre\tlandmarks\texpert\tp1/pre_lm.csv",
    ]
    m = tmp_path / "cohort.tsv"
    m.write_text("\n".join(rows) + "\n")
    return m, tmp_path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole workflow on one demo patient with a tiny agent budget: a real Snakemake run (shared by tests)."""
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "workflow"))
    from workflow_helpers import TINY, run, workdir

    wd = workdir(tmp_path_factory.mktemp("run"), ["tiny01"], overrides=TINY)
    run(["-s", str(ROOT / "Snakefile"), "-d", str(wd), "--configfile", str(wd / "config" / "config.yaml"), "--cores", "2"])
    return wd
