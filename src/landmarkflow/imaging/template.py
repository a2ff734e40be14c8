"""The MNI152 template that nilearn ships (no download: the files are inside the package).

Used by the skull stripping of whole-head scans (:mod:`landmarkflow.preprocess.pipeline`) and by the demo
generator (:mod:`landmarkflow.demo.synthetic`).
"""

from __future__ import annotations

import functools

import numpy as np

from . import spatial


@functools.lru_cache(maxsize=1)
def load_template(margin_mm: int = 8):
    """The MNI152 (2009) template at 1 mm with its tissue maps, cropped to the brain.

    Returns ``(affine, t1, gm, wm, brain)``; intensities scaled to [0, 1].
    """
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=1)
    gm = datasets.load_mni152_gm_template(resolution=1)
    wm = datasets.load_mni152_wm_template(resolution=1)
    brain = datasets.load_mni152_brain_mask(resolution=1)
    arrays = [np.asarray(x.dataobj, dtype=np.float32) for x in (t1, gm, wm, brain)]
    idx = np.argwhere(arrays[3] > 0)
    lo = np.maximum(idx.min(0) - margin_mm, 0)
    hi = np.minimum(idx.max(0) + margin_mm + 1, arrays[3].shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    arrays = [a[sl] for a in arrays]
    affine = t1.affine.copy()
    affine[:3, 3] = spatial.voxel_to_world(lo, t1.affine)
    t = arrays[0]
    arrays[0] = np.clip(t / np.percentile(t[arrays[3] > 0], 99.5), 0, 1.2)
    return affine, *arrays
