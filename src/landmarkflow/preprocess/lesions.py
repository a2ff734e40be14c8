"""The lesion masks of every stage after the registrations: the manifest's, completed by derived ones.

Most cohorts have no tumour or cavity masks (BraTS-Reg ships none, clinical data rarely has a segmented
cavity). Without them ANTs SyN would run unmasked, the guided agents would have nothing to keep out of and
radiomics could not leave the lesions out. Where the manifest gives no mask for a time point, this module
derives one from the scans themselves, through the second registration (:mod:`..registration.svf`):
where the post-op scan has tissue the pre-op one lacks or the other way round (a resection cavity, a
tumour), the forward and backward transforms cannot agree, and their forward-backward inconsistency is
large (DIRAC's absent-correspondence estimate, Mok & Chung 2022).

The rule, per time point (its own grid: the pre-op tumour from ``e_f`` on the pre-op grid, the post-op
cavity from ``e_b`` on the post-op grid, both in ``results/<patient>/svf/``):

1. candidates: brain voxels whose inconsistency exceeds its median over the brain by more than
   ``threshold_mm``;
2. regions: the 26-connected components of the candidates; the ``components`` largest are kept, and of
   those the ones of at least ``min_ml`` (none left: the time point has no derived lesion);
3. each region is cut where its excess falls below ``peak_fraction`` of its peak (the 99th percentile of
   the excess in it): the map is blurred (its means, and the smooth fields) and spreads a lesion over its
   surroundings, by more the larger its peak; a share of the peak adapts to the lesion;
4. shape: a morphological closing of radius ``closing_mm``, holes filled, cut to the brain.

Given masks always win, and a partial set (a tumour mask only) is completed. A derived mask is an
estimate, not a segmentation: it is blurred like the inconsistency map, and where the registration itself
fails (the map also lights up there) it can mark tissue that is not a lesion; the QC figure shows it.

Outputs (``results/<patient>/lesions/``, whole or not at all): ``pre_tumor.nii.gz`` and
``post_resection.nii.gz`` where the time point has a lesion (given or derived; a derived one may be empty:
then the stages planned with it run as without one), ``lesions.json`` (per time point: ``source`` given,
derived or none, the volume in ml; the rule's settings where a mask was derived) and ``qc.png``.
Every later stage reads the masks there (:class:`..cohort.preproc_folder.PreprocFolder` with ``lesions``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..cohort.manifest import LESIONS, TIMEPOINTS
from ..cohort.preproc_folder import PreprocFolder
from ..core import layout
from ..core.config import schema_field
from ..core.errors import InputError
from ..core.files import atomic_dir
from ..imaging import spatial
from ..imaging.image import Image, read_image, write_image
from ..imaging.masks import ellipsoid, inside_mask
from ..io.landmarks import points_of
from .qc import qc_figure

log = logging.getLogger(__name__)

INFO = "lesions.json"
#: the svf map each time point's lesion is derived from (its own grid)
SOURCE_MAPS = layout.SVF_CONSISTENCY


@dataclass(frozen=True)
class LesionSettings:
    """The config's ``lesions`` section (see the module docstring for the rule)."""

    derive: bool = schema_field("lesions", "derive")
    threshold_mm: float = schema_field("lesions", "threshold_mm")
    min_ml: float = schema_field("lesions", "min_ml")
    components: int = schema_field("lesions", "components")
    peak_fraction: float = schema_field("lesions", "peak_fraction")
    closing_mm: float = schema_field("lesions", "closing_mm")

    @classmethod
    def from_settings(cls, settings: dict | None) -> "LesionSettings":
        return cls(**(settings or {}))


def derive_mask(inconsistency: np.ndarray, brain: np.ndarray, spacing, settings: LesionSettings) -> np.ndarray:
    """A lesion mask (bool, the grid of ``inconsistency``) from a forward-backward inconsistency map (mm) and
    the brain mask of the same grid; all False when no region passes the rule (module docstring)."""
    brain = np.asarray(brain, dtype=bool)
    err = np.asarray(inconsistency, dtype=float)
    if err.shape != brain.shape:
        raise ValueError(f"inconsistency map {err.shape} and brain mask {brain.shape} are not on one grid")
    if not brain.any():
        return np.zeros_like(brain)
    spacing = np.asarray(spacing, dtype=float).reshape(3)
    excess = err - np.median(err[brain])
    candidates = brain & (excess > settings.threshold_mm)
    labels, n = ndimage.label(candidates, structure=np.ones((3, 3, 3)))
    if n == 0:
        return np.zeros_like(brain)
    sizes = np.bincount(labels.ravel())[1:] * float(np.prod(spacing)) / 1000.0  # ml
    order = np.argsort(sizes)[::-1][: int(settings.components)]
    mask = np.zeros_like(brain)
    for i in order:
        if sizes[i] < settings.min_ml:
            continue
        region = labels == i + 1
        peak = np.percentile(excess[region], 99)  # the map is blurred: its region is cut at a share of its peak
        mask |= region & (excess > settings.peak_fraction * peak)
    if not mask.any():
        return mask
    if settings.closing_mm > 0:
        radius = np.maximum(np.rint(settings.closing_mm / spacing).astype(int), 0)
        ball = ellipsoid(radius)
        pad = tuple((int(r), int(r)) for r in radius)
        mask = ndimage.binary_closing(np.pad(mask, pad), structure=ball)[tuple(slice(r, -r or None) for r in radius)]
    return ndimage.binary_fill_holes(mask) & brain


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two masks (NaN when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    total = a.sum() + b.sum()
    return float("nan") if total == 0 else float(2.0 * (a & b).sum() / total)


def complete_lesions(preproc_dir, outdir, settings: dict | None = None, svf_dir=None) -> dict:
    """The lesion folder of a preprocessed patient (module docstring): the manifest's masks where it has them,
    derived ones from ``svf_dir`` (the patient's svf folder) where it has none and ``settings['derive']``.
    Returns ``lesions.json``'s content. Post-op landmarks inside a derived cavity are a warning (a derived
    mask is an estimate), in the log and in ``lesions.json``."""
    cfg = LesionSettings.from_settings(settings)
    folder = PreprocFolder(preproc_dir)
    info: dict = {"patient": folder.patient, "warnings": []}
    masks: dict = {}
    for tp in TIMEPOINTS:
        given = folder.mask_image(tp, LESIONS[tp])
        if given is not None:
            masks[tp], source = Image(given.data > 0, given.affine), "given"
        elif cfg.derive and svf_dir is not None:
            masks[tp], source = _derived(folder, tp, Path(svf_dir), cfg), "derived"
            if not masks[tp].data.any():  # kept, empty: the stages planned with a lesion run as without one
                info["warnings"].append(f"no {LESIONS[tp]} mask given, and the derived one is empty: no region of "
                                        f"the svf inconsistency passed the rule ({cfg.threshold_mm} mm, {cfg.min_ml} ml); "
                                        "the stages that use it run as without a mask")
        else:
            source = "none"
        volume = float(masks[tp].data.sum() * np.prod(spatial.spacing_of(masks[tp].affine)) / 1000.0) if tp in masks else 0.0
        info[tp] = {"mask": LESIONS[tp], "source": source, "volume_ml": round(volume, 3)}
    if any(info[tp]["source"] == "derived" for tp in TIMEPOINTS):
        info["settings"] = asdict(cfg)  # the rule's settings, where they made a mask
    info["warnings"] += _landmarks_inside(folder, masks, info)
    with atomic_dir(outdir) as tmp:
        for tp, img in masks.items():
            write_image(Image(img.data.astype(np.uint8), img.affine), tmp / f"{tp}_{LESIONS[tp]}.nii.gz")
        (tmp / INFO).write_text(json.dumps(info, indent=2))
        qc_figure(PreprocFolder(preproc_dir, lesions=tmp), folder.reference_modality, tmp / "qc.png",
                  title=f"{folder.patient}, lesions: " + ", ".join(f"{info[tp]['mask']} {info[tp]['source']}" for tp in TIMEPOINTS),
                  landmarks={"post_landmarks": folder.landmarks("post")})
    log.info("%s: lesion masks: %s", folder.patient, describe(info))
    for warning in info["warnings"]:
        log.warning("%s: %s", folder.patient, warning)
    return info


def _derived(folder: PreprocFolder, tp: str, svf_dir: Path, cfg: LesionSettings) -> Image:
    path = svf_dir / SOURCE_MAPS[tp]
    if not path.exists():
        raise InputError(f"{path}: not found; the {LESIONS[tp]} mask is derived from the svf registration's "
                         "inconsistency map (an svf folder of an older version: rerun it with "
                         "`snakemake --forcerun register_svf`, or give the mask in the manifest)")
    err = read_image(path)
    brain = folder.mask(tp, "brain")
    if brain is None or brain.shape != err.shape:
        raise InputError(f"{path}: its grid {err.shape} is not the preprocessed {tp}-op brain mask's "
                         f"({None if brain is None else brain.shape}); rerun it with `snakemake --forcerun register_svf`")
    return Image(derive_mask(err.data, brain, spatial.spacing_of(err.affine), cfg), err.affine)


def _landmarks_inside(folder: PreprocFolder, masks: dict, info: dict) -> list[str]:
    """Warnings for post-op landmarks inside a derived post-op cavity (inside a given one is an error the
    validation reports)."""
    if info["post"]["source"] != "derived" or "post" not in masks:
        return []
    lm = folder.landmarks("post")
    inside = [str(name) for name in lm["landmark"][inside_mask(masks["post"], points_of(lm))]]
    if not inside:
        return []
    return [f"post-op landmark(s) {', '.join(inside)} inside the derived cavity: the derived mask is an estimate, "
            "check it in lesions/qc.png (the guided agents' guidance there is as wrong as the mask)"]


def read_info(lesions_dir) -> dict | None:
    """``lesions.json`` of a lesion folder, or None when there is none."""
    p = Path(lesions_dir) / INFO
    return json.loads(p.read_text()) if p.exists() else None


def describe(info: dict) -> str:
    """One line: which masks were given and which derived (``tumor given, resection derived (12.3 ml)``)."""
    parts = []
    for tp in TIMEPOINTS:
        entry = info[tp]
        extra = f" ({entry['volume_ml']:.1f} ml)" if entry["source"] == "derived" else ""
        parts.append(f"{entry['mask']} {entry['source']}{extra}")
    return ", ".join(parts)
