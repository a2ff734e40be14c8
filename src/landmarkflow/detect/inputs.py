"""What the agents see of the two scans: the appearance gap between the time points made smaller.

The agents learn on the post-op scan and search in the pre-op scan: another acquisition (slice thickness,
blur, contrast, a scanner's intensity curve). Three measures, each a setting of ``agent``:

* ``match_resolution``: each scan is blurred along the axes where the other one's native voxels are
  longer (:func:`..imaging.intensity.blur_to_resolution`), so that both see the tissue at the coarser
  resolution (training on the post-op scan, test on the pre-op one);
* ``test_smooth_mm`` (test): a Gaussian of the pre-op scan, for the blur the voxel sizes do not tell;
* ``match_intensities`` (test): the pre-op scan's intensities mapped onto the post-op scan's distribution,
  inside the brain with the lesions left out (quantile matching), which undoes a monotone contrast change;
* ``input_norm: local``: both scans locally standardised, an input that contrast and gain move less.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..cohort.preproc_folder import PreprocFolder
from ..imaging import spatial
from ..imaging.intensity import blur_to_resolution, local_standardise, match_histogram

#: the local standardisation's window (sigma, mm)
LOCAL_SIGMA_MM = 5.0


def _resolutions(folder: PreprocFolder, timepoint: str):
    other = "pre" if timepoint == "post" else "post"
    return folder.native_extent(timepoint), folder.native_extent(other)


def scan(folder: PreprocFolder, timepoint: str, modalities, match_resolution: bool) -> tuple[np.ndarray, np.ndarray]:
    """A time point's channels (C, X, Y, Z) and affine, blurred to the other time point's resolution when asked."""
    vol, affine = folder.stack(timepoint, modalities)
    own, other = _resolutions(folder, timepoint)
    if match_resolution and own is not None and other is not None:
        vol = blur_to_resolution(vol, own, other, spatial.spacing_of(affine))
    return vol, affine


def training_scan(folder: PreprocFolder, modalities, cfg) -> tuple[np.ndarray, np.ndarray]:
    """The post-op channels the agents learn on (before augmentation and :func:`network_input`)."""
    return scan(folder, "post", modalities, cfg.match_resolution)


def test_scan(folder: PreprocFolder, modalities, cfg) -> tuple[np.ndarray, np.ndarray]:
    """The pre-op channels the agents search in, prepared as ``cfg`` says (resolution, smoothing, intensities,
    network input)."""
    pre, affine = scan(folder, "pre", modalities, cfg.match_resolution)
    spacing = spatial.spacing_of(affine)
    if cfg.test_smooth_mm > 0:
        pre = ndimage.gaussian_filter(pre.astype(np.float32), (0, *(cfg.test_smooth_mm / spacing)))
    if cfg.match_intensities:
        post, _ = training_scan(folder, modalities, cfg)
        pre = match_to(pre, post, folder)
    return network_input(pre, cfg.input_norm, spacing), affine


def match_to(pre: np.ndarray, post: np.ndarray, folder: PreprocFolder) -> np.ndarray:
    """Each pre-op channel's intensities onto the post-op channel's, inside the brains with the lesions left out."""
    def region(tp):
        brain = folder.mask(tp, "brain")
        region = np.ones(pre.shape[1:], bool) if brain is None else brain.copy()
        lesion = folder.lesion(tp)
        if lesion is not None:
            region &= ~ndimage.binary_dilation(lesion, iterations=2)
        return region

    pre_region, post_region = region("pre"), region("post")
    return np.stack([match_histogram(pre[c], pre_region, post[c], post_region) for c in range(pre.shape[0])])


def network_input(volume: np.ndarray, input_norm: str, spacing) -> np.ndarray:
    """Volumes ((V,) C, X, Y, Z) as the network sees them: as they are, or locally standardised."""
    if input_norm == "none":
        return volume
    if input_norm != "local":
        raise ValueError(f"agent.input_norm {input_norm!r}: expected none or local")
    v = np.asarray(volume, dtype=np.float32)
    if v.ndim == 5:
        return np.stack([local_standardise(x, LOCAL_SIGMA_MM, spacing) for x in v])
    return local_standardise(v, LOCAL_SIGMA_MM, spacing)
