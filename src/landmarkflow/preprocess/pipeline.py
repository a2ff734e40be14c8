"""Preprocessing of one patient: N4, brain mask, rigid co-registration, 1 mm resampling, normalisation.

The output frame is the *pre-operative world* (RAS mm): an axis-aligned RAS
grid (``spacing_mm``, default 1 mm isotropic) around the pre-op brain.
Reorientation and resampling never change world coordinates, so a point of
the preprocessed pre-op images has the same coordinates as in the original
pre-op scan: every landmark the workflow writes is in the original pre-op
world without a back-transform. Post-op data reach that frame through one
rigid transform (ANTs, mutual information, multi-resolution, cost-function
masked outside the tumour and cavity); each image is interpolated once, from
its original grid, through the composed matrix.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..cohort.manifest import LESIONS, TIMEPOINTS, Manifest
from ..cohort.preproc_folder import PreprocFolder
from ..core.config import schema_field
from ..core.errors import InputError
from ..core.files import atomic_dir
from ..imaging import spatial
from ..imaging.image import Image, read_image, write_image
from ..imaging.intensity import normalise
from ..imaging.masks import ellipsoid, fill_slices, head_mask, largest_component, otsu_threshold
from ..imaging.resample import resample, resample_mask
from ..imaging.template import load_template
from ..io.landmarks import landmarks_frame, points_of, read_landmarks, write_landmarks
from ..registration import ants
from .qc import qc_figure

log = logging.getLogger(__name__)

SKULL_STRIP_METHODS = ("auto", "none", "morph_atlas")
NORMALISATIONS = ("percentile", "zscore", "none")


@dataclass
class Settings:
    """Preprocessing parameters (config key ``preprocess``, with the top-level ``seed`` and
    ``reference_modality``); defaults from the config schema."""

    skull_strip: str = schema_field("preprocess", "skull_strip")
    n4: bool = schema_field("preprocess", "n4")
    spacing_mm: float = schema_field("preprocess", "spacing_mm")
    crop_margin_mm: float = schema_field("preprocess", "crop_margin_mm")
    normalise: str = schema_field("preprocess", "normalise")
    keep_aligned: bool = schema_field("preprocess", "keep_aligned")
    seed: int = schema_field(None, "seed")
    reference_modality: list = schema_field(None, "reference_modality")

    def __post_init__(self):
        for key, allowed in (("skull_strip", SKULL_STRIP_METHODS), ("normalise", NORMALISATIONS)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"preprocess.{key}={getattr(self, key)!r}: expected one of {', '.join(allowed)}")
        if self.spacing_mm <= 0:
            raise ValueError(f"preprocess.spacing_mm={self.spacing_mm}: expected a positive spacing")


def skull_strip(image: Image) -> np.ndarray:
    """Brain mask of a whole-head T1-weighted scan, offline: morphology guided by the MNI152 brain.

    1. head mask; tissue-intensity voxels more than 3 mm inside it;
    2. an in-plane opening (~6 mm) cuts the bridges to scalp and skull; the
       component holding most of the deep head is the brain candidate, closed
       and filled;
    3. the MNI152 brain mask (nilearn), registered affinely onto that
       candidate (mask to mask, mean squares), removes what lies more than
       3 mm outside a brain's shape (orbits, neck, temporal muscle).
    """
    sp = image.spacing
    sm = ndimage.gaussian_filter(image.data, 0.7 / sp)
    head = head_mask(image)
    depth = ndimage.distance_transform_edt(head, sampling=sp)
    core = depth > 12
    if core.sum() < 100:
        raise InputError("the head is too small for skull stripping (less than 12 mm deep)")
    thr = otsu_threshold(sm[sm > np.percentile(sm, 1)])
    lo, hi = np.percentile(sm[core], [5, 95])
    cand = (sm > max(0.8 * lo, 0.6 * thr)) & (sm < hi) & (depth > 3)
    r = np.round(4 / sp).astype(int) + 2
    r[2] = 0  # in-plane: thick slices would make a 3D opening erase whole slices
    brain = largest_component(ndimage.binary_opening(cand, structure=ellipsoid(r)), weight=core)
    brain = fill_slices(ndimage.binary_closing(brain, structure=ellipsoid(np.maximum(np.round(6 / sp), 1))))
    brain &= depth > 3

    a_tpl, _, _, _, tpl_brain = load_template()
    fixed = Image(ndimage.gaussian_filter(brain.astype(np.float32), 1.5 / sp), image.affine)
    moving = Image(ndimage.gaussian_filter(tpl_brain.astype(np.float32), 1.5), a_tpl)
    m = ants.register_linear(fixed, moving, "Affine", metric="meansquares")
    atlas = resample_mask(Image(tpl_brain, a_tpl), image.shape, image.affine, m).data > 0
    near_atlas = ndimage.distance_transform_edt(~atlas, sampling=sp) <= 3
    return largest_component(brain & near_atlas)


def brain_mask(image: Image, method: str, given: Image | None) -> np.ndarray:
    """The brain mask of a time point: the manifest's, or computed by ``method``."""
    if given is not None and method in ("auto", "none"):
        return given.data > 0
    if method == "none":  # already skull-stripped: the foreground is the brain
        return head_mask(image)
    return skull_strip(image)


def target_grid(mask: np.ndarray, affine, spacing: float, margin_mm: float):
    """Axis-aligned RAS grid (shape, affine) covering the mask's world bounding box plus a margin."""
    idx = np.argwhere(mask)
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    lo_i, hi_i = idx.min(0), idx.max(0)
    box = lo_i + corners * (hi_i - lo_i)
    world = spatial.voxel_to_world(box, affine)
    lo = np.floor(world.min(0) - margin_mm)
    hi = np.ceil(world.max(0) + margin_mm)
    shape = tuple(int(n) for n in np.floor((hi - lo) / spacing) + 1)
    a = np.diag([spacing, spacing, spacing, 1.0])
    a[:3, 3] = lo
    return shape, a


# ----------------------------------------------------------------------------- one patient
def preprocess_patient(m: Manifest, patient: str, outdir, settings: Settings, identity_out=None) -> dict:
    """Preprocess one patient into ``outdir`` (written whole or not at all).

    Writes ``{pre,post}_<modality>.nii.gz``, the masks (``pre_brain``,
    ``post_brain``, ``pre_tumor``, ``post_resection`` when given), the
    landmarks in the pre-op world (``landmarks_<timepoint>_<annotator>.csv``),
    the ANTs rigid transform ``post_to_pre_rigid.mat``, ``preproc.json`` and
    ``qc.png``. With ``identity_out``, the post-op landmarks of the primary
    annotator after rigid alignment, the ``identity`` method, are written there.
    """
    t_start = time.time()
    ants.set_seed(settings.seed)
    modalities = m.common_modalities(patient)
    ref, why = m.reference_choice(patient, settings.reference_modality)
    log.info("%s: reference modality %s", patient, why)
    modalities = [ref] + [x for x in modalities if x != ref]
    info: dict = {"patient": patient, "reference_modality": ref, "modalities": modalities, "warnings": [], "timings_s": {}}

    def tick(step, t0):
        info["timings_s"][step] = round(time.time() - t0, 2)
        log.info("%s: %s in %.1f s", patient, step, time.time() - t0)

    with atomic_dir(outdir) as tmp:
        folder = PreprocFolder(tmp)
        images, masks = _read_patient(m, patient, modalities, settings, tick)
        t0 = time.time()
        to_ref, pre_to_post = _rigid_registrations(images, masks, modalities, folder.rigid_transform_path,
                                                   settings.keep_aligned, info)
        tick("registration", t0)
        t0 = time.time()
        shape, affine = target_grid(masks["pre", "brain"].data > 0, masks["pre", "brain"].affine, settings.spacing_mm,
                                    settings.crop_margin_mm)
        _resample_patient(images, masks, modalities, to_ref, {"pre": np.eye(4), "post": pre_to_post}, shape, affine,
                          settings.normalise, folder, info["warnings"])
        tick("resample", t0)
        post_to_pre = np.linalg.inv(pre_to_post)  # post world point -> pre world point
        landmarks = _landmarks_to_pre(m, patient, post_to_pre, shape, affine, folder, info["warnings"])
        info["primary_annotator"] = m.primary_annotator(patient)
        info["grid"] = {"shape": list(shape), "affine": affine.tolist()}
        info["post_to_pre"] = post_to_pre.tolist()  # 4x4 RAS: post-op world point -> pre-op world point
        info["rotation_deg"] = float(np.degrees(np.arccos(np.clip((np.trace(post_to_pre[:3, :3]) - 1) / 2, -1, 1))))
        info["native_extent_mm"] = {tp: native_extent(images[tp, modalities[0]].affine, post_to_pre if tp == "post" else None)
                                    for tp in TIMEPOINTS}
        t0 = time.time()
        qc_figure(folder, modalities[0], folder.qc_path, title=patient, landmarks=landmarks)
        tick("qc", t0)
        info["timings_s"]["total"] = round(time.time() - t_start, 2)
        for w in info["warnings"]:
            log.warning("%s: %s", patient, w)
        folder.write_info(info)
    if identity_out is not None:
        write_landmarks(PreprocFolder(outdir).landmarks("post"), identity_out)
    return info


def _read_patient(m: Manifest, patient: str, modalities: list, settings: Settings, tick) -> tuple[dict, dict]:
    """Every image of a patient on its own grid (N4-corrected when ``settings.n4``), the brain masks (given or
    computed on the reference modality) and the lesion masks: ({(tp, modality): Image}, {(tp, name): Image})."""
    ref = modalities[0]
    images: dict = {}
    masks: dict = {}
    for tp in TIMEPOINTS:
        t0 = time.time()
        paths = m.images(patient, tp)
        for mod in modalities:
            images[tp, mod] = read_image(paths[mod])
        given = m.path(patient, tp, "mask", "brain")
        given_img = read_image(given, dtype=None) if given else None
        if given_img is not None and not given_img.same_grid(images[tp, ref]):
            given_img = resample_mask(given_img, images[tp, ref].shape, images[tp, ref].affine)
        mask = brain_mask(images[tp, ref], settings.skull_strip, given_img)
        masks[tp, "brain"] = Image(mask.astype(np.uint8), images[tp, ref].affine)
        tick(f"brain_mask_{tp}", t0)
        if settings.n4:
            t0 = time.time()
            for mod in modalities:
                log.info("%s: N4 of the %s-operative %s scan", patient, tp, mod)  # (a minute or two each on a whole scan)
                img = images[tp, mod]
                images[tp, mod] = ants.n4(img, Image(head_mask(img).astype(np.uint8), img.affine))
            tick(f"n4_{tp}", t0)
        if p := m.path(patient, tp, "mask", LESIONS[tp]):
            masks[tp, LESIONS[tp]] = read_image(p, dtype=None)
    return images, masks


def _rigid_registrations(images: dict, masks: dict, modalities: list, out_file, keep_aligned: bool,
                         info: dict) -> tuple[dict, np.ndarray]:
    """The rigid matrices (RAS, reference world -> image world) of every other modality of a time point onto its
    reference modality, and the pre-op -> post-op one of the reference modalities (ANTs' convention: fixed
    world points to moving world points), cost-function masked outside the lesions; the latter is written
    to ``out_file``. With ``keep_aligned``, scans that already share a space are kept as they are
    (:func:`aligned_or_registered`); ``info["alignment"]`` says, per pair, what was done."""
    ref = modalities[0]
    to_ref: dict = {}
    info["alignment"] = {}
    for tp in TIMEPOINTS:
        to_ref[tp, ref] = np.eye(4)
        for mod in modalities[1:]:
            log.info("rigid alignment %s_%s onto %s_%s ...", tp, mod, tp, ref)
            to_ref[tp, mod], info["alignment"][f"{tp}_{mod}"] = aligned_or_registered(
                images[tp, ref], images[tp, mod], masks[tp, "brain"], None, keep_aligned)
    fixed_mask = _registration_mask(masks["pre", "brain"], masks.get(("pre", LESIONS["pre"])))
    moving_mask = _registration_mask(masks["post", "brain"], masks.get(("post", LESIONS["post"])))
    log.info("rigid alignment post_%s onto pre_%s ...", ref, ref)
    pre_to_post, info["alignment"]["post"] = aligned_or_registered(images["pre", ref], images["post", ref], fixed_mask,
                                                                   moving_mask, keep_aligned, out_file)
    for pair, note in info["alignment"].items():
        log.info("rigid alignment %s: %s", pair, note)
    return to_ref, pre_to_post


#: scans on one grid whose rigid fit moves the brain by at most this much (mm) are taken as co-registered
SAME_GRID_KEEP_MM = 3.0


def aligned_or_registered(fixed: Image, moving: Image, fixed_mask: Image, moving_mask: Image | None, keep_aligned: bool,
                          out_file=None) -> tuple[np.ndarray, str]:
    """The rigid matrix (fixed world -> moving world) of ``moving`` onto ``fixed`` and what was done.

    With ``keep_aligned`` a registration that can only add noise is not applied: one that moves no point of the
    fixed mask by as much as a voxel, and, for two images on the same grid (BraTS-Reg's co-registered scans,
    sequences resampled together), one that moves it by at most :data:`SAME_GRID_KEEP_MM` (a lesion that changed
    pulls a rigid fit by a millimetre or two; a head that really moved between scans on one grid, as the same
    protocol on the same scanner can give, moves more and is registered). A coarse fit comes first (all levels
    but the finest: a third of the cost or less, within a few tenths of a millimetre of the full fit): where it
    moves the brain by at most half the limit the scans are kept without the full fit. ``out_file`` gets the
    ANTs transform that is used (identity included)."""
    same = fixed.same_grid(moving)
    voxel = float(min(fixed.spacing.min(), moving.spacing.min()))
    limit = SAME_GRID_KEEP_MM if same else voxel
    grid = "the scans share a grid and " if same else ""
    if keep_aligned:
        coarse = ants.register_linear(fixed, moving, "Rigid", fixed_mask=fixed_mask, moving_mask=moving_mask, coarse=True)
        if (moved := max_displacement_mm(coarse, fixed_mask)) <= limit / 2:
            return _kept(out_file, f"{grid}a coarse rigid fit would move the brain by at most {moved:.2f} mm: kept as "
                                   "they are (not applied; no full fit)")
    matrix = ants.register_linear(fixed, moving, "Rigid", fixed_mask=fixed_mask, moving_mask=moving_mask, out_file=out_file)
    moved = max_displacement_mm(matrix, fixed_mask)
    if keep_aligned and (moved < voxel or (same and moved <= SAME_GRID_KEEP_MM)):
        why = (f"{grid}the rigid fit would move the brain by at most {moved:.2f} mm" if same
               else f"the rigid fit would move the brain by at most {moved:.2f} mm, less than a voxel")
        return _kept(out_file, why + ": kept as they are (not applied)")
    if same and keep_aligned:
        log.warning("the scans share a grid, but the rigid fit moves the brain by up to %.1f mm: applied", moved)
    return matrix, f"registered: the rigid fit moves the brain by up to {moved:.2f} mm"


def _kept(out_file, why: str) -> tuple[np.ndarray, str]:
    """Scans kept as they are: the identity (also as the ANTs transform in ``out_file``, when given) and why."""
    if out_file is not None:
        ants.write_identity(out_file)
    return np.eye(4), why


def native_extent(affine: np.ndarray, to_frame: np.ndarray | None = None) -> list[float]:
    """How long (mm) a voxel of an image's native grid is along each axis of the preprocessing frame (RAS), its
    axes carried into the frame by ``to_frame`` (a rigid world-to-world matrix; None: the identity): for thick
    axial slices (1, 1, 3), and a mixture where the grid is oblique."""
    m = np.asarray(affine, dtype=float)[:3, :3]
    if to_frame is not None:
        m = np.asarray(to_frame, dtype=float)[:3, :3] @ m
    return np.abs(m).sum(axis=1).round(4).tolist()


def max_displacement_mm(matrix: np.ndarray, mask: Image) -> float:
    """The largest displacement (mm) that a world-to-world ``matrix`` gives a voxel of ``mask`` (at the corners
    of its bounding box, where a rigid or affine transform moves points most)."""
    idx = np.argwhere(np.asarray(mask.data) > 0)
    if not len(idx):
        idx = np.array([[0, 0, 0], np.array(mask.shape) - 1])
    lo, hi = idx.min(0), idx.max(0)
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])], dtype=float)
    world = spatial.voxel_to_world(corners, mask.affine)
    return float(np.max(np.linalg.norm(spatial.apply_affine(matrix, world) - world, axis=1)))


def _resample_patient(images: dict, masks: dict, modalities: list, to_ref: dict, chain: dict, shape, affine,
                      normalisation: str, folder: PreprocFolder, warnings: list) -> None:
    """Every image and mask onto the one grid (``shape``, ``affine``), each interpolated once through its composed
    matrix (``chain``: grid world -> reference world of the time point), images normalised in the brain."""
    brain = {tp: resample_mask(masks[tp, "brain"], shape, affine, chain[tp]).data > 0 for tp in TIMEPOINTS}
    for tp in TIMEPOINTS:
        for mod in modalities:
            img = resample(images[tp, mod], shape, affine, to_ref[tp, mod] @ chain[tp])
            img.data = normalise(img.data, brain[tp], normalisation)
            write_image(img, folder.image_path(tp, mod))
        write_image(Image(brain[tp].astype(np.uint8), affine), folder.mask_path(tp, "brain"))
        name = LESIONS[tp]
        if (tp, name) in masks:
            # masks live on one of the time point's image grids: the reference's transform applies to all of them
            res = resample_mask(masks[tp, name], shape, affine, chain[tp])
            if not res.data.any():
                warnings.append(f"{name} mask is empty after resampling")
            write_image(res, folder.mask_path(tp, name))


def _landmarks_to_pre(m: Manifest, patient: str, post_to_pre: np.ndarray, shape, affine, folder: PreprocFolder,
                      warnings: list) -> dict:
    """Every annotator's landmarks in the pre-op world (post-op ones through the rigid transform), written to the
    folder; returns them by ``<timepoint>_<annotator>``."""
    landmarks = {}
    for tp in TIMEPOINTS:
        for ann in m.annotators(patient, tp):
            lm = read_landmarks(m.path(patient, tp, "landmarks", ann))
            pts = points_of(lm)
            if tp == "post":
                pts = spatial.apply_affine(post_to_pre, pts)
            out = landmarks_frame(lm["landmark"], pts, **({"label": lm["label"]} if "label" in lm else {}))
            inside = spatial.inside_image(pts, affine, shape)
            for lid in out["landmark"][~inside]:
                warnings.append(f"{tp} landmark {lid} ({ann}) lies outside the preprocessed grid")
            write_landmarks(out, folder.landmarks_path(tp, ann))
            landmarks[f"{tp}_{ann}"] = out
    return landmarks


def _registration_mask(brain: Image, lesion: Image | None) -> Image:
    """Brain minus a dilated lesion (tumour/cavity): the region where both scans correspond."""
    mask = brain.data > 0
    if lesion is not None and lesion.same_grid(brain):
        mask &= ~ndimage.binary_dilation(lesion.data > 0, iterations=3)
    elif lesion is not None:
        res = resample_mask(lesion, brain.shape, brain.affine).data > 0
        mask &= ~ndimage.binary_dilation(res, iterations=3)
    return Image(mask.astype(np.float32), brain.affine)
