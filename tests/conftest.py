"""Fixtures shared by every test: one per kind of test data (builders in ``testdata.py``)."""

import numpy as np
import pytest

from testdata import make_image, oblique_affine
from landmarkflow.imaging import spatial
from landmarkflow.imaging.image import Image, write_image
from landmarkflow.io.landmarks import landmarks_frame, write_landmarks


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu are skipped, with the reason, where PyTorch sees no CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device (marker gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def oblique():
    return oblique_affine()


@pytest.fixture(scope="session")
def demo_patient(tmp_path_factory):
    """One generated demo patient (session-wide: generation takes ~10 s)."""
    from landmarkflow.demo import synthetic

    out = tmp_path_factory.mktemp("demo")
    paths = synthetic.make_patient("demo01", out, seed=7)
    return out, paths


@pytest.fixture
def small_cohort(tmp_path):
    """A valid one-patient manifest on small images with an oblique geometry; returns (manifest, folder)."""
    aff = oblique_affine()
    shape = (20, 18, 10)
    d = tmp_path / "p1"
    d.mkdir()
    for tp in ("pre", "post"):
        make_image(d / f"{tp}_t1.nii.gz", shape, aff, rng=np.random.default_rng(1 if tp == "pre" else 2))
    mask = np.zeros(shape, np.uint8)
    mask[2:6, 2:6, 2:5] = 1
    write_image(Image(mask, aff), d / "post_resection.nii.gz")
    centre = spatial.voxel_to_world([[12, 10, 6], [14, 12, 7]], aff)
    write_landmarks(landmarks_frame(["1", "2"], centre), d / "post_lm.csv")
    write_landmarks(landmarks_frame(["1", "2"], centre + 1.0), d / "pre_lm.csv")
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
