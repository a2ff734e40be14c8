"""Radiomics: pyradiomics' published baseline through our own I/O, spheres, the differential table."""

import numpy as np
import pandas as pd
import pytest

from conftest import DATA
from landmarkflow import io, radiomics, spatial

BRAIN = DATA / "pyradiomics-brain"
CLASSES = ["firstorder", "glcm", "gldm", "glrlm", "glszm", "ngtdm", "shape"]


def _baseline(cls):
    df = pd.read_csv(BRAIN / "baseline" / f"baseline_{cls}.csv")
    df = df[~df["featureName"].str.startswith(("diagnostics_", "general_info"))]
    return dict(zip(df["featureName"], df["brain1"].astype(float)))


# Mesh-based shape features: pyradiomics 3.0.1 itself, run directly on the NRRD files, differs from the
# published 12-digit values by up to 1e-3 relative (its surface mesh changed since the baseline was made);
# for these our path must equal pyradiomics on the files exactly and the baseline to 1e-3.
MESH = {"original_shape_MeshVolume", "original_shape_SurfaceArea", "original_shape_Sphericity", "original_shape_SurfaceVolumeRatio"}


@pytest.fixture(scope="module")
def direct_features():
    from radiomics import featureextractor

    ext = featureextractor.RadiomicsFeatureExtractor(str(BRAIN / "baseline_params.yaml"))
    out = ext.execute(str(BRAIN / "brain1_image.nrrd"), str(BRAIN / "brain1_label.nrrd"), label=1)
    return {k: float(v) for k, v in out.items() if not k.startswith("diagnostics_")}


@pytest.fixture(scope="module")
def brain1_features():
    ext = radiomics.extractor(BRAIN / "baseline_params.yaml")
    image = io.read_image(BRAIN / "brain1_image.nrrd")
    label = io.read_image(BRAIN / "brain1_label.nrrd", dtype=None)
    return radiomics.extract(ext, image, label.data == 1)


@pytest.mark.parametrize("cls", CLASSES)
def test_reproduces_the_published_brain1_baseline(brain1_features, direct_features, cls):
    expected = _baseline(cls)
    assert expected, cls
    for name, value in expected.items():
        assert name in brain1_features, name
        if name in MESH:
            assert brain1_features[name] == direct_features[name], name
            assert brain1_features[name] == pytest.approx(value, rel=1e-3), name
        else:
            # published with 12-17 significant digits: agree to 1e-6 relative (1e-9 absolute near 0)
            assert brain1_features[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


def test_sphere_radius_and_anisotropic_grid(oblique):
    shape = (60, 50, 30)
    centre = spatial.voxel_to_world([30, 25, 15], oblique)
    m = radiomics.sphere(shape, oblique, centre, 5.0)
    pts = spatial.voxel_to_world(np.argwhere(m), oblique)
    assert np.all(np.linalg.norm(pts - centre, axis=1) <= 5.0)
    vol = m.sum() * np.prod(spatial.spacing_of(oblique))
    assert abs(vol - 4 / 3 * np.pi * 125) / (4 / 3 * np.pi * 125) < 0.25
    assert not radiomics.sphere(shape, oblique, centre + 1000, 5.0).any()


def test_feature_class_names():
    assert radiomics.feature_class("original_glcm_Contrast") == "glcm"
    assert radiomics.feature_class("log-sigma-1-0-mm-3D_firstorder_Mean") == "firstorder"
