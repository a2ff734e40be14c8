"""Builders of the tests' data: small images with a non-trivial geometry and preprocessed patient folders.

The fixtures in ``conftest.py`` use these; a test that needs another shape calls a builder itself.
"""

from pathlib import Path

import numpy as np

from landmarkflow.cohort.preproc_folder import PreprocFolder
from landmarkflow.imaging import spatial
from landmarkflow.imaging.image import Image, write_image
from landmarkflow.io.landmarks import landmarks_frame, write_landmarks

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


def make_image(path, shape=(12, 10, 8), affine=None, value=None, dtype=np.float32, rng=None):
    """An image file of Gaussian noise (or a constant ``value``) on ``affine``; returns its path."""
    affine = np.eye(4) if affine is None else affine
    if value is None:
        rng = rng or np.random.default_rng(0)
        data = rng.normal(100, 10, shape).astype(dtype)
    else:
        data = np.full(shape, value, dtype=dtype)
    write_image(Image(data, affine), path)
    return path


def write_preproc(path, affine, images: dict, brain: dict | None = None, lesions: dict | None = None,
                  landmarks: dict | None = None, patient: str = "P1", annotator: str = "expert", **info) -> PreprocFolder:
    """A preprocessed patient folder written through :class:`PreprocFolder`, as the preprocessing writes one.

    ``images``: {(timepoint, modality): array} (the first modality is the reference); ``brain`` and ``lesions``:
    {timepoint: bool array}; ``landmarks``: {(timepoint, annotator): (identifiers, world RAS points)};
    ``info``: more keys of ``preproc.json``."""
    folder = PreprocFolder(path)
    folder.path.mkdir(parents=True, exist_ok=True)
    modalities = list(dict.fromkeys(m for _, m in images))
    folder.write_info({"patient": patient, "reference_modality": modalities[0], "modalities": modalities,
                       "primary_annotator": annotator, "post_to_pre": np.eye(4).tolist(), "rotation_deg": 0.0,
                       "warnings": [], "timings_s": {}, **info})
    for (tp, mod), data in images.items():
        write_image(Image(np.asarray(data, np.float32), affine), folder.image_path(tp, mod))
    for tp, mask in (brain or {}).items():
        write_image(Image(np.asarray(mask, np.uint8), affine), folder.mask_path(tp, "brain"))
    for tp, mask in (lesions or {}).items():
        write_image(Image(np.asarray(mask, np.uint8), affine), folder.mask_path(tp, {"pre": "tumor", "post": "resection"}[tp]))
    for (tp, ann), (ids, world) in (landmarks or {}).items():
        write_landmarks(landmarks_frame(ids, world), folder.landmarks_path(tp, ann))
    return folder
