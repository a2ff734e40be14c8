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
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import io, registration, spatial
from .io import InputError
from .manifest import Manifest
from .preproc_folder import PreprocFolder

log = logging.getLogger(__name__)

SKULL_STRIP_METHODS = ("auto", "none", "morph_atlas")
NORMALISATIONS = ("percentile", "zscore", "none")


@dataclass
class Settings:
    """Preprocessing parameters (config key ``preprocess``)."""

    skull_strip: str = "auto"
    n4: bool = True
    spacing_mm: float = 1.0
    crop_margin_mm: float = 10.0
    normalise: str = "percentile"
    seed: int = 42
    reference_modality: list = field(default_factory=lambda: ["t1ce", "t1", "t2", "flair"])

    def __post_init__(self):
        for key, allowed in (("skull_strip", SKULL_STRIP_METHODS), ("normalise", NORMALISATIONS)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"preprocess.{key}={getattr(self, key)!r}: expected one of {', '.join(allowed)}")
        if self.spacing_mm <= 0:
            raise ValueError(f"preprocess.spacing_mm={self.spacing_mm}: expected a positive spacing")


# ----------------------------------------------------------------------------- masks
def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    hist, edges = np.histogram(values, bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w = np.cumsum(hist).astype(float)
    m = np.cumsum(hist * centres)
    between = (m[-1] * w - m * w[-1]) ** 2 / (w * (w[-1] - w) + 1e-12)
    return float(centres[np.argmax(between[:-1])])


def _largest_component(mask: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    counts = np.bincount(lab[weight].ravel() if weight is not None else lab.ravel(), minlength=n + 1)
    counts[0] = 0
    return lab == int(np.argmax(counts))


def _fill_slices(mask: np.ndarray) -> np.ndarray:
    out = ndimage.binary_fill_holes(mask)
    for k in range(out.shape[2]):
        out[:, :, k] = ndimage.binary_fill_holes(out[:, :, k])
    return out


def _ellipsoid(radius_vox) -> np.ndarray:
    r = [max(int(x), 0) for x in radius_vox]
    grid = np.ogrid[tuple(slice(-x, x + 1) for x in r)]
    return sum((g / max(x, 1)) ** 2 for g, x in zip(grid, r)) <= 1


def head_mask(image: io.Image) -> np.ndarray:
    """Foreground (head or brain): Otsu on a lightly smoothed image, largest component, holes filled."""
    sm = ndimage.gaussian_filter(image.data, 0.7 / image.spacing)
    vals = sm[sm > np.percentile(sm, 1)]
    if vals.size == 0:
        raise InputError("the image has no foreground (all voxels at the minimum)")
    mask = sm > 0.5 * otsu_threshold(vals)
    return _fill_slices(_largest_component(mask))


def skull_strip(image: io.Image) -> np.ndarray:
    """Brain mask of a whole-head T1-weighted scan, offline: morphology guided by the MNI152 brain.

    1. head mask; tissue-intensity voxels more than 3 mm inside it;
    2. an in-plane opening (~6 mm) cuts the bridges to scalp and skull; the
       component holding most of the deep head is the brain candidate, closed
       and filled;
    3. the MNI152 brain mask (nilearn), registered affinely onto that
       candidate (mask to mask, mean squares), removes what lies more than
       3 mm outside a brain's shape (orbits, neck, temporal muscle).
    """
    from .template import load_template

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
    brain = _largest_component(ndimage.binary_opening(cand, structure=_ellipsoid(r)), weight=core)
    brain = _fill_slices(ndimage.binary_closing(brain, structure=_ellipsoid(np.maximum(np.round(6 / sp), 1))))
    brain &= depth > 3

    a_tpl, _, _, _, tpl_brain = load_template()
    fixed = io.Image(ndimage.gaussian_filter(brain.astype(np.float32), 1.5 / sp), image.affine)
    moving = io.Image(ndimage.gaussian_filter(tpl_brain.astype(np.float32), 1.5), a_tpl)
    m = registration.register_linear(fixed, moving, "Affine", metric="meansquares")
    atlas = registration.resample_mask(io.Image(tpl_brain, a_tpl), image.shape, image.affine, m).data > 0
    near_atlas = ndimage.distance_transform_edt(~atlas, sampling=sp) <= 3
    return _largest_component(brain & near_atlas)


def brain_mask(image: io.Image, method: str, given: io.Image | None) -> np.ndarray:
    """The brain mask of a time point: the manifest's, or computed by ``method``."""
    if given is not None and method in ("auto", "none"):
        return given.data > 0
    if method == "none":  # already skull-stripped: the foreground is the brain
        return head_mask(image)
    return skull_strip(image)


def normalise(data: np.ndarray, mask: np.ndarray, method: str) -> np.ndarray:
    """Intensity normalisation inside the brain; zero outside it."""
    vals = data[mask]
    if vals.size == 0:
        raise InputError("empty brain mask: cannot normalise intensities")
    if method == "percentile":
        lo, hi = np.percentile(vals, [1, 99])
        out = (data - lo) / max(hi - lo, 1e-6)
    elif method == "zscore":
        out = (data - vals.mean()) / max(vals.std(), 1e-6)
    else:
        out = data.copy()
    return np.where(mask, out, 0).astype(np.float32)


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
    registration.set_seed(settings.seed)
    outdir = Path(outdir)
    tmp = outdir.with_name(outdir.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    folder = PreprocFolder(tmp)
    modalities = m.common_modalities(patient)
    ref = m.reference_modality(patient, settings.reference_modality)
    modalities = [ref] + [x for x in modalities if x != ref]
    info: dict = {"patient": patient, "reference_modality": ref, "modalities": modalities, "warnings": [], "timings_s": {}}

    def tick(step, t0):
        info["timings_s"][step] = round(time.time() - t0, 2)
        log.info("%s: %s in %.1f s", patient, step, time.time() - t0)

    # 1. read, N4, brain masks (native grids)
    images: dict = {}
    masks: dict = {}
    for tp in ("pre", "post"):
        t0 = time.time()
        paths = m.images(patient, tp)
        for mod in modalities:
            images[tp, mod] = io.read_image(paths[mod])
        given = m.path(patient, tp, "mask", "brain")
        given_img = io.read_image(given, dtype=None) if given else None
        if given_img is not None and not given_img.same_grid(images[tp, ref]):
            given_img = registration.resample_mask(given_img, images[tp, ref].shape, images[tp, ref].affine)
        mask = brain_mask(images[tp, ref], settings.skull_strip, given_img)
        masks[tp, "brain"] = io.Image(mask.astype(np.uint8), images[tp, ref].affine)
        tick(f"brain_mask_{tp}", t0)
        if settings.n4:
            t0 = time.time()
            for mod in modalities:
                img = images[tp, mod]
                head = io.Image(head_mask(img).astype(np.uint8), img.affine)
                images[tp, mod] = registration.n4(img, head)
            tick(f"n4_{tp}", t0)
        for name in ("tumor", "resection"):
            p = m.path(patient, tp, "mask", name)
            if p:
                masks[tp, name] = io.read_image(p, dtype=None)

    # 2. rigid registrations (matrices: reference world -> image world)
    t0 = time.time()
    to_ref: dict = {}
    for tp in ("pre", "post"):
        to_ref[tp, ref] = np.eye(4)
        for mod in modalities[1:]:
            to_ref[tp, mod] = registration.register_linear(
                images[tp, ref], images[tp, mod], "Rigid", fixed_mask=masks[tp, "brain"]
            )
    fixed_mask = _registration_mask(masks["pre", "brain"], masks.get(("pre", "tumor")))
    moving_mask = _registration_mask(masks["post", "brain"], masks.get(("post", "resection")))
    # ANTs convention: the matrix maps fixed (pre) world points to moving (post) world points
    pre_to_post = registration.register_linear(
        images["pre", ref], images["post", ref], "Rigid", fixed_mask=fixed_mask, moving_mask=moving_mask,
        out_file=folder.rigid_transform_path,
    )
    tick("registration", t0)

    # 3. one grid, one interpolation per image
    t0 = time.time()
    shape, affine = target_grid(masks["pre", "brain"].data > 0, masks["pre", "brain"].affine, settings.spacing_mm, settings.crop_margin_mm)
    chain = {"pre": np.eye(4), "post": pre_to_post}
    brain = {tp: registration.resample_mask(masks[tp, "brain"], shape, affine, chain[tp]).data > 0 for tp in ("pre", "post")}
    for tp in ("pre", "post"):
        for mod in modalities:
            mat = to_ref[tp, mod] @ chain[tp]
            img = registration.resample(images[tp, mod], shape, affine, mat)
            img.data = normalise(img.data, brain[tp], settings.normalise)
            io.write_image(img, folder.image_path(tp, mod))
        io.write_image(io.Image(brain[tp].astype(np.uint8), affine), folder.mask_path(tp, "brain"))
        for name in ("tumor", "resection"):
            if (tp, name) in masks:
                # masks live on one of the time point's image grids: the reference's transform applies to all of them
                res = registration.resample_mask(masks[tp, name], shape, affine, chain[tp])
                if not res.data.any():
                    info["warnings"].append(f"{name} mask is empty after resampling")
                io.write_image(res, folder.mask_path(tp, name))
    tick("resample", t0)

    # 4. landmarks into the pre-op world
    post_to_pre = np.linalg.inv(pre_to_post)  # post world point -> pre world point
    landmarks = {}
    for tp in ("pre", "post"):
        for ann in m.annotators(patient, tp):
            lm = io.read_landmarks(m.path(patient, tp, "landmarks", ann))
            pts = io.points_of(lm)
            if tp == "post":
                pts = spatial.apply_affine(post_to_pre, pts)
            out = io.landmarks_frame(lm["landmark"], pts)
            inside = spatial.inside_image(pts, affine, shape)
            for lid in out["landmark"][~inside]:
                info["warnings"].append(f"{tp} landmark {lid} ({ann}) lies outside the preprocessed grid")
            io.write_landmarks(out, folder.landmarks_path(tp, ann))
            landmarks[f"{tp}_{ann}"] = out
    primary = m.primary_annotator(patient)
    info["primary_annotator"] = primary
    info["grid"] = {"shape": list(shape), "affine": affine.tolist()}
    info["post_to_pre"] = post_to_pre.tolist()  # 4x4 RAS: post-op world point -> pre-op world point
    info["rotation_deg"] = float(np.degrees(np.arccos(np.clip((np.trace(post_to_pre[:3, :3]) - 1) / 2, -1, 1))))

    t0 = time.time()
    qc_figure(folder, modalities[0], folder.qc_path, title=patient, landmarks=landmarks)
    tick("qc", t0)
    info["timings_s"]["total"] = round(time.time() - t_start, 2)
    for w in info["warnings"]:
        log.warning("%s: %s", patient, w)
    folder.write_info(info)
    if outdir.exists():
        shutil.rmtree(outdir)
    tmp.rename(outdir)
    if identity_out is not None:
        io.write_landmarks(PreprocFolder(outdir).landmarks("post"), identity_out)
    return info


def _registration_mask(brain: io.Image, lesion: io.Image | None) -> io.Image:
    """Brain minus a dilated lesion (tumour/cavity): the region where both scans correspond."""
    mask = brain.data > 0
    if lesion is not None and lesion.same_grid(brain):
        mask &= ~ndimage.binary_dilation(lesion.data > 0, iterations=3)
    elif lesion is not None:
        res = registration.resample_mask(lesion, brain.shape, brain.affine).data > 0
        mask &= ~ndimage.binary_dilation(res, iterations=3)
    return io.Image(mask.astype(np.float32), brain.affine)


# ----------------------------------------------------------------------------- QC
def qc_figure(folder: PreprocFolder, modality: str, out_png, title: str = "", landmarks: dict | None = None) -> None:
    """Pre-op image, co-registered post-op image and their checkerboard, with masks and ``landmarks``
    (name -> landmark table in the pre-op world)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pre = folder.image("pre", modality)
    post = folder.image("post", modality)
    contours = {}
    for tp, name, colour in (("pre", "brain", "yellow"), ("pre", "tumor", "red"), ("post", "resection", "cyan")):
        mask = folder.mask(tp, name)
        if mask is not None:
            contours[f"{tp}_{name}"] = (mask, colour)
    points = {name: spatial.world_to_voxel(io.points_of(lm), pre.affine) for name, lm in sorted((landmarks or {}).items())}
    centre = np.mean(np.concatenate(list(points.values())), 0) if points else np.array(pre.shape) / 2
    c = np.clip(np.rint(centre).astype(int), 0, np.array(pre.shape) - 1)
    checker = (np.indices(pre.shape) // 16).sum(0) % 2 == 0
    panels = [("pre-op", pre.data), ("post-op, rigidly aligned", post.data), ("checkerboard", np.where(checker, pre.data, post.data))]
    fig, axes = plt.subplots(3, 3, figsize=(11, 11))
    styles = {}
    for i, name in enumerate(points):
        styles[name] = dict(marker="x" if name.startswith("post") else "o", color=plt.cm.Set1(i % 9))
    for row, axis in enumerate((2, 1, 0)):
        for col, (label, vol) in enumerate(panels):
            ax = axes[row, col]
            sl = np.take(vol, c[axis], axis=axis)
            ax.imshow(sl.T, cmap="gray", origin="lower", vmin=0, vmax=np.percentile(vol, 99.5))
            for mask, colour in contours.values():
                ms = np.take(mask, c[axis], axis=axis)
                if ms.any():
                    ax.contour(ms.T, [0.5], colors=colour, linewidths=0.8)
            for name, pts in points.items():
                other = [a for a in range(3) if a != axis]
                near = np.abs(pts[:, axis] - c[axis]) < 6
                st = styles[name]
                ax.scatter(pts[near, other[0]], pts[near, other[1]], s=40, marker=st["marker"], label=name,
                           **({"color": st["color"]} if st["marker"] == "x" else {"facecolors": "none", "edgecolors": st["color"]}))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(label)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(labels))
    fig.suptitle(f"{title}: {modality} (yellow brain, red tumour, cyan cavity; o pre-op, x post-op landmarks)")
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    with io.atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=70, format="png")
    plt.close(fig)
