"""Masks: the foreground of an image, connected components, and where points lie against a mask."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..core.errors import InputError
from . import spatial
from .image import Image


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    hist, edges = np.histogram(values, bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w = np.cumsum(hist).astype(float)
    m = np.cumsum(hist * centres)
    between = (m[-1] * w - m * w[-1]) ** 2 / (w * (w[-1] - w) + 1e-12)
    return float(centres[np.argmax(between[:-1])])


def largest_component(mask: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    counts = np.bincount(lab[weight].ravel() if weight is not None else lab.ravel(), minlength=n + 1)
    counts[0] = 0
    return lab == int(np.argmax(counts))


def fill_slices(mask: np.ndarray) -> np.ndarray:
    out = ndimage.binary_fill_holes(mask)
    for k in range(out.shape[2]):
        out[:, :, k] = ndimage.binary_fill_holes(out[:, :, k])
    return out


def ellipsoid(radius_vox) -> np.ndarray:
    r = [max(int(x), 0) for x in radius_vox]
    grid = np.ogrid[tuple(slice(-x, x + 1) for x in r)]
    return sum((g / max(x, 1)) ** 2 for g, x in zip(grid, r)) <= 1


def head_mask(image: Image) -> np.ndarray:
    """Foreground (head or brain): Otsu on a lightly smoothed image, largest component, holes filled."""
    sm = ndimage.gaussian_filter(image.data, 0.7 / image.spacing)
    vals = sm[sm > np.percentile(sm, 1)]
    if vals.size == 0:
        raise InputError("the image has no foreground (all voxels at the minimum)")
    mask = sm > 0.5 * otsu_threshold(vals)
    return fill_slices(largest_component(mask))


def distance_to(region: np.ndarray, image: Image, points) -> np.ndarray:
    """Distance (mm) of world points to ``region`` (a boolean array on ``image``'s grid): 0 inside, inf outside
    the image; the distance map is computed only when a point lies outside the region."""
    ijk = np.rint(spatial.world_to_voxel(np.atleast_2d(points), image.affine)).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.array(image.shape)), axis=1)
    out = np.full(len(ijk), np.inf)
    hit = np.zeros(len(ijk), bool)
    hit[inside] = region[tuple(ijk[inside].T)]
    out[hit] = 0.0
    todo = inside & ~hit
    if todo.any():
        dist = ndimage.distance_transform_edt(~region, sampling=image.spacing)
        out[todo] = dist[tuple(ijk[todo].T)]
    return out


def inside_mask(mask: Image, xyz) -> np.ndarray:
    ijk = np.rint(spatial.world_to_voxel(np.atleast_2d(xyz), mask.affine)).astype(int)
    ok = np.all((ijk >= 0) & (ijk < np.array(mask.shape)), axis=1)
    out = np.zeros(len(ijk), bool)
    out[ok] = mask.data[tuple(ijk[ok].T)] != 0
    return out
