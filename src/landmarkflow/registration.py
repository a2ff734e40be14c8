"""ANTs (antspyx) at the boundary: image conversion, rigid/affine registration as RAS matrices,
resampling through world-to-world matrices.

Conventions. A registration of ``moving`` onto ``fixed`` yields, in ITK's terms,
a transform that maps *points* of the fixed space to the moving space (the
opposite direction of the image warp's visual effect). Here such a transform
is a 4x4 matrix in RAS mm, ``fixed world -> moving world``; a post-op landmark
``q`` (moving) lands in the pre-op (fixed) space at ``inv(M) @ q``.
:func:`matrix_from_ants_file` is the one place where an ANTs affine file is
turned into that matrix (LPS -> RAS included).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import io, spatial

log = logging.getLogger(__name__)


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Reproducible ANTs: a fixed sampling seed (and one thread when ``deterministic``)."""
    import ants

    ants.config.set_ants_deterministic(on=deterministic, seed_value=int(seed))


def to_ants(image: io.Image):
    import ants

    spacing, origin, direction = spatial.itk_from_affine(image.affine)
    return ants.from_numpy(
        np.ascontiguousarray(image.data, dtype=np.float32),
        origin=tuple(float(o) for o in origin),
        spacing=tuple(float(s) for s in spacing),
        direction=direction,
    )


def from_ants(img) -> io.Image:
    affine = spatial.affine_from_itk(img.spacing, img.origin, img.direction)
    return io.Image(np.asarray(img.numpy(), dtype=np.float32), affine)


def matrix_from_ants_file(path) -> np.ndarray:
    """4x4 RAS matrix (fixed world -> moving world) of an ANTs/ITK affine transform file."""
    import ants

    tx = ants.read_transform(str(path))
    params = np.asarray(tx.parameters, dtype=float)
    centre = np.asarray(tx.fixed_parameters, dtype=float)
    a = params[:9].reshape(3, 3)
    t = params[9:12]
    lps = np.eye(4)
    lps[:3, :3] = a
    lps[:3, 3] = t + centre - a @ centre
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ lps @ flip


def register_linear(
    fixed: io.Image,
    moving: io.Image,
    kind: str = "Rigid",
    fixed_mask: io.Image | None = None,
    moving_mask: io.Image | None = None,
    out_file=None,
    metric: str = "mattes",
) -> np.ndarray:
    """Rigid/affine registration (mutual information, multi-resolution).

    Returns the RAS matrix fixed world -> moving world; with ``out_file`` the
    ANTs transform is also written there (atomically).
    """
    import shutil
    import tempfile

    import ants

    if kind not in ("Rigid", "Affine", "Similarity"):
        raise ValueError(f"kind must be Rigid, Affine or Similarity, got {kind!r}")
    with tempfile.TemporaryDirectory(prefix="lmf_reg_") as tmp:
        reg = ants.registration(
            fixed=to_ants(fixed),
            moving=to_ants(moving),
            type_of_transform=kind,
            mask=to_ants(fixed_mask) if fixed_mask is not None else None,
            moving_mask=to_ants(moving_mask) if moving_mask is not None else None,
            aff_metric=metric,
            aff_sampling=32,
            aff_random_sampling_rate=0.25,
            aff_iterations=(1000, 500, 250, 50),
            aff_shrink_factors=(6, 4, 2, 1),
            aff_smoothing_sigmas=(3, 2, 1, 0),
            outprefix=str(Path(tmp) / "reg_"),
        )
        mat_file = reg["fwdtransforms"][0]
        matrix = matrix_from_ants_file(mat_file)
        if out_file is not None:
            with io.atomic_path(out_file, suffix=".mat") as dest:
                shutil.copyfile(mat_file, dest)
    return matrix


def resample(
    image: io.Image,
    target_shape,
    target_affine,
    matrix: np.ndarray | None = None,
    order: int = 1,
    cval: float = 0.0,
) -> io.Image:
    """Resample ``image`` onto a target grid; ``matrix`` maps target world -> image world (identity if None).

    ``order=1`` for intensities; for label masks use :func:`resample_mask`.
    """
    m = np.eye(4) if matrix is None else np.asarray(matrix, dtype=float)
    # target voxel -> image voxel in one affine: inv(A_img) @ M @ A_target
    vox = np.linalg.inv(image.affine) @ m @ spatial.check_affine(target_affine)
    out = ndimage.affine_transform(
        np.asarray(image.data, dtype=np.float32),
        vox[:3, :3],
        offset=vox[:3, 3],
        output_shape=tuple(int(s) for s in target_shape),
        order=order,
        mode="constant",
        cval=cval,
        prefilter=order > 1,
    )
    return io.Image(out, np.asarray(target_affine, dtype=float))


def resample_mask(mask: io.Image, target_shape, target_affine, matrix=None) -> io.Image:
    """Label-aware resampling of a binary mask: linear interpolation of the mask, then >= 0.5."""
    soft = resample(io.Image((np.asarray(mask.data) > 0).astype(np.float32), mask.affine), target_shape, target_affine, matrix)
    return io.Image((soft.data >= 0.5).astype(np.uint8), soft.affine)


def n4(image: io.Image, mask: io.Image | None = None, shrink: int = 4) -> io.Image:
    """N4 bias-field correction (ANTs) of a non-negative image."""
    import ants

    img = to_ants(io.Image(np.clip(image.data, 0, None), image.affine))
    m = to_ants(io.Image((mask.data > 0).astype(np.float32), mask.affine)) if mask is not None else None
    out = ants.n4_bias_field_correction(img, mask=m, shrink_factor=shrink, convergence={"iters": [50, 50, 30], "tol": 1e-6})
    return from_ants(out)
