"""Resampling onto another grid through world-to-world matrices (scipy; no ANTs)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from . import spatial
from .image import Image


def resample(
    image: Image,
    target_shape,
    target_affine,
    matrix: np.ndarray | None = None,
    order: int = 1,
    cval: float = 0.0,
) -> Image:
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
    return Image(out, np.asarray(target_affine, dtype=float))


def resample_mask(mask: Image, target_shape, target_affine, matrix=None) -> Image:
    """Label-aware resampling of a binary mask: linear interpolation of the mask, then >= 0.5."""
    soft = resample(Image((np.asarray(mask.data) > 0).astype(np.float32), mask.affine), target_shape, target_affine, matrix)
    return Image((soft.data >= 0.5).astype(np.uint8), soft.affine)
