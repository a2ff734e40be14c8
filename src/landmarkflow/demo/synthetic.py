"""The demo cohort: synthetic patients made from the real MNI152 template that nilearn ships.

Nothing is downloaded. For each patient, with its own seed:

* **pre-operative scan** - the template placed in a patient head pose (a small
  rigid transform), with a tumour (enhancing rim, necrotic core, oedema in
  FLAIR) that pushes the surrounding tissue outwards (mass effect);
* **post-operative scan** - the tumour resected (a CSF-like cavity with a thin
  enhancing margin, less oedema), the tissue collapsed toward the cavity by a
  few mm (decaying with distance), the head moved rigidly, and another
  acquisition: smoothed, 3 mm slices with partial volume, another intensity
  curve, a bias field and its own noise, so that the post-op image is not a
  warped copy of the pre-op texture (or, :class:`Acquisition` ``hard``, another
  scanner: 5 mm slices, contrast changes per tissue class, a random intensity curve);
* **landmarks** - 3 salient anatomical points (3D corners of the structure
  tensor) in the post-op scan, 6-20 mm from the cavity (its wall is not a
  landmark: the pre-op scan has tumour there), and by default one more 2-5 mm
  from it, on tissue outside the pre-op tumour, where registration is least
  reliable; their exact pre-op positions from the known deformation; a simulated
  second rater (the pre-op truth plus 1.2 mm Gaussian noise per axis) as the
  inter-rater reference.

Spaces: ``p`` pre-op world (RAS mm, the tissue frame), ``s`` the post-op tissue
before the head movement (same frame as ``p``), ``q`` post-op world. The
collapse is a backward map ``p = s + w(s)`` and the head movement
``q = R (s - centre) + centre + t``, so a post-op landmark ``q`` has the exact
pre-op truth ``p = s + w(s)`` with ``s = R^T (q - centre - t) + centre``.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from ..core.files import atomic_path
from ..imaging import spatial
from ..imaging.image import Image, write_image
from ..imaging.template import load_template
from ..io.landmarks import landmarks_frame, write_landmarks

log = logging.getLogger(__name__)

#: where the workflow (and ``landmarkflow demo``) writes the demo cohort
DEMO_DIR = "resources/demo"
POST_SLICE_MM = 3.0  # the standard acquisition's slices

#: (timepoint, kind, name, file) of every manifest row of a demo patient
DEMO_SPEC = [
    ("pre", "image", "t1ce", "pre_t1ce.nii.gz"),
    ("pre", "image", "flair", "pre_flair.nii.gz"),
    ("pre", "mask", "tumor", "pre_tumor.nii.gz"),
    ("pre", "mask", "brain", "pre_brain.nii.gz"),
    ("pre", "landmarks", "expert", "pre_landmarks_expert.csv"),
    ("pre", "landmarks", "expert2", "pre_landmarks_expert2.csv"),
    ("post", "image", "t1ce", "post_t1ce.nii.gz"),
    ("post", "image", "flair", "post_flair.nii.gz"),
    ("post", "mask", "resection", "post_resection.nii.gz"),
    ("post", "landmarks", "expert", "post_landmarks_expert.csv"),
]
#: every file a demo patient folder holds (the manifest's files and the truth)
DEMO_FILES = [spec[3] for spec in DEMO_SPEC] + ["truth.json"]


@dataclass
class Truth:
    """The parameters that define one synthetic patient (written as ``truth.json``)."""

    patient: str
    seed: int
    head_pose: list  # 4x4 pre world -> template world
    tumour_centre: list  # pre world, mm
    tumour_radius: float
    mass_effect: float  # a: m(p) = -a (p - c) exp(-|p - c|^2 / 2 sigma_m^2)
    mass_sigma: float
    collapse: float  # b: w(s) = b (s - c) exp(-|s - c|^2 / 2 sigma_c^2)
    collapse_sigma: float
    motion_rotation: list  # 3x3
    motion_centre: list
    motion_translation: list

    def collapse_field(self, s) -> np.ndarray:
        """w(s): pre-op position minus post-op tissue position, for points in the tissue frame."""
        s = np.atleast_2d(s)
        d = s - np.asarray(self.tumour_centre)
        g = np.exp(-np.sum(d * d, axis=1, keepdims=True) / (2 * self.collapse_sigma**2))
        return self.collapse * d * g

    def post_world_to_tissue(self, q) -> np.ndarray:
        q = np.atleast_2d(q)
        r = np.asarray(self.motion_rotation)
        c = np.asarray(self.motion_centre)
        return (q - c - np.asarray(self.motion_translation)) @ r + c  # R^T applied to rows

    def tissue_to_post_world(self, s) -> np.ndarray:
        s = np.atleast_2d(s)
        r = np.asarray(self.motion_rotation)
        c = np.asarray(self.motion_centre)
        return (s - c) @ r.T + c + np.asarray(self.motion_translation)

    def post_to_pre(self, q) -> np.ndarray:
        """Exact pre-op world position of the tissue at post-op world position ``q``."""
        s = self.post_world_to_tissue(q)
        return s + self.collapse_field(s)

    def rigid_post_to_pre(self, q) -> np.ndarray:
        """Where a post-op point lands after undoing only the head movement (the ideal rigid alignment)."""
        return self.post_world_to_tissue(q)

    def mass_field(self, p) -> np.ndarray:
        p = np.atleast_2d(p)
        d = p - np.asarray(self.tumour_centre)
        g = np.exp(-np.sum(d * d, axis=1, keepdims=True) / (2 * self.mass_sigma**2))
        return -self.mass_effect * d * g

    def save(self, path) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path) -> Truth:
        return cls(**json.loads(Path(path).read_text()))


def patient_rng(seed: int, patient: str) -> np.random.Generator:
    """A generator that depends on the cohort seed and the patient identifier only."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(patient.encode())]))


def _sample(volume, affine, xyz, order=1, cval=0.0) -> np.ndarray:
    """Sample ``volume`` (with ``affine``) at world points ``xyz`` (n, 3)."""
    ijk = spatial.world_to_voxel(xyz, affine)
    return ndimage.map_coordinates(volume, ijk.T, order=order, mode="constant", cval=cval, prefilter=False)


def _grid_points(shape, affine) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    return spatial.voxel_to_world(ijk, affine)


def _smooth_noise(rng, shape, sigma) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return n / (n.std() + 1e-9)


def _bias_field(rng, shape, strength) -> np.ndarray:
    """A smooth multiplicative field, 1 +- ``strength``, from a random low-order polynomial."""
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    c = rng.uniform(-1, 1, 6)
    f = c[0] * x + c[1] * y + c[2] * z + c[3] * x * y + c[4] * y * z + c[5] * x * x
    return 1 + strength * f / (np.abs(f).max() + 1e-9)


def _tissue_intensities(t1, gm, wm, brain, f, post: bool):
    """T1ce-like and FLAIR-like intensities from template values and the tumour level set ``f``
    (f < 1 inside the tumour, 0 at its centre). Pre-op: tumour present; post-op: resected."""
    csf = np.clip(brain - gm - wm, 0, 1)
    flair = 0.82 * gm + 0.55 * wm + 0.10 * csf
    flair = flair * (0.85 + 0.3 * np.clip(1 - t1, 0, 1))  # keep some of the template's texture
    t1ce = t1.copy()
    oedema_zone = np.clip((1.6 - f) / 0.6, 0, 1) * (f >= 1) * np.clip(wm + 0.3 * gm, 0, 1)
    if not post:
        inside = f < 1
        rim = np.exp(-((f - 0.85) ** 2) / (2 * 0.07**2))
        core = np.clip((0.6 - f) / 0.2, 0, 1)
        tumour_t1 = 0.45 + 0.85 * rim - 0.25 * core
        t1ce = np.where(inside, tumour_t1, t1ce * (1 - 0.15 * oedema_zone))
        flair = np.where(inside, 0.8 + 0.15 * core, flair + 0.45 * oedema_zone)
    else:
        cavity = f < 1
        margin = np.exp(-((f - 1.04) ** 2) / (2 * 0.04**2)) * (f >= 1)
        t1ce = np.where(cavity, 0.08, t1ce + 0.35 * margin)
        flair = np.where(cavity, 0.06, flair + 0.2 * oedema_zone * (f < 1.3))
    return t1ce * brain, flair * brain


#: the post-op acquisitions the demo can simulate (config ``demo.acquisition``)
ACQUISITIONS = ("standard", "hard")


@dataclass(frozen=True)
class Acquisition:
    """How the post-op scan is acquired. ``standard``: the demo's follow-up (in-plane smoothing, 3 mm slices,
    another gamma per modality, a bias field, its own noise). ``hard``: a follow-up on another scanner, as far
    from the baseline as real ones are: thicker slices, more blur, bias and noise, a contrast change per tissue
    class (grey matter, white matter, CSF) and a random monotone intensity curve on top of the gamma."""

    slice_mm: int = 3
    smooth: float = 0.8
    bias: float = 0.15
    noise: float = 0.03
    tissue_gain: float = 0.0  # largest relative change of each tissue class's intensity
    curve: float = 0.0  # strength of the random monotone curve (0: none)

    @classmethod
    def named(cls, name: str) -> "Acquisition":
        if name == "standard":
            return cls()
        if name == "hard":
            return cls(slice_mm=5, smooth=1.2, bias=0.25, noise=0.05, tissue_gain=0.2, curve=0.5)
        raise ValueError(f"demo acquisition {name!r}: expected one of {', '.join(ACQUISITIONS)}")


def make_patient(patient: str, outdir, seed: int, n_landmarks: int = 3, near_cavity: int = 0,
                 acquisition: str = "standard") -> dict:
    """Generate one demo patient into ``outdir/<patient>/``; return the written paths by role.

    ``n_landmarks`` salient landmarks 6-20 mm from the cavity and ``near_cavity`` more 2-6 mm from it
    (numbered after them; drawn with a random stream of their own, so that the others and the images do not
    change with it); ``acquisition`` (:data:`ACQUISITIONS`) is how the post-op scan is acquired (with a
    stream of its own too: the same anatomy, tumour and landmarks under every acquisition)."""
    acq = Acquisition.named(acquisition)
    rng = patient_rng(seed, patient)
    tpl = load_template()
    truth, a_pre = _draw_patient(rng, patient, seed, tpl)
    pre = _pre_op(rng, truth, a_pre, tpl)
    post = _post_op_tissue(truth, pre, tpl, acq.slice_mm)

    def clear_of_tumour(pts):
        """Pre-op points on tissue outside the tumour (f > 1.1), well inside the pre-op image."""
        f = _sample(pre["f"], a_pre, pts, order=1, cval=0.0)
        return (f > 1.1) & spatial.inside_image(pts, a_pre, pre["f"].shape, margin_vox=10)

    accept = lambda q: clear_of_tumour(truth.post_to_pre(q))  # noqa: E731
    lm_q = _choose_landmarks(rng, post["t1ce"], post["brain"], post["cavity"], post["affine"], n_landmarks, accept)
    if near_cavity:
        near = _choose_landmarks(patient_rng(seed, f"{patient}/near-cavity"), post["t1ce"], post["brain"], post["cavity"],
                                 post["affine"], near_cavity, accept, max_dist=NEAR_CAVITY_MM[1], min_dist=NEAR_CAVITY_MM[0],
                                 min_sep=10.0, avoid=lm_q)
        lm_q = np.vstack([lm_q, near])
    lm_p = truth.post_to_pre(lm_q)
    ids = [str(i + 1) for i in range(len(lm_q))]
    post_images = _acquire_post(rng, patient_rng(seed, f"{patient}/acquisition"), post, truth, pre, tpl, acq)
    paths = _write_patient(Path(outdir) / patient, pre, post, post_images, truth, ids, lm_q, lm_p)
    rater2 = lm_p + rng.normal(0, 1.2, lm_p.shape)
    for _ in range(100):  # a rater does not click inside the tumour
        bad = ~clear_of_tumour(rater2)
        if not bad.any():
            break
        rater2[bad] = lm_p[bad] + rng.normal(0, 1.2, (bad.sum(), 3))
    write_landmarks(landmarks_frame(ids, rater2), paths["pre_landmarks_expert2"])
    log.info("%s: tumour r=%.1f mm, landmarks %d (%d near the cavity), %s acquisition, initial errors %s mm", patient,
             truth.tumour_radius, len(ids), near_cavity, acquisition,
             np.round(np.linalg.norm(lm_p - truth.rigid_post_to_pre(lm_q), axis=1), 2).tolist())
    return {k: str(v) for k, v in paths.items()}


#: the band of the landmarks near the cavity (mm from it in the 1 mm post-op tissue; within 6 mm of the
#: resection mask of the thick-sliced scan)
NEAR_CAVITY_MM = (2.0, 5.0)


def _draw_patient(rng, patient: str, seed: int, tpl) -> tuple[Truth, np.ndarray]:
    """The patient's head pose, pre-op grid (the template's, stored left-right flipped with its own origin),
    tumour and deformations: (truth, pre-op affine)."""
    a_tpl, t1, gm, wm, brain = tpl
    centre_tpl = spatial.voxel_to_world(ndimage.center_of_mass(brain > 0), a_tpl)
    rot = spatial.rotation_matrix(rng.uniform(-4, 4, 3))
    shift = rng.uniform(-6, 6, 3)
    pose = np.eye(4)
    pose[:3, :3] = rot
    pose[:3, 3] = centre_tpl - rot @ (centre_tpl + shift)  # pre world point (centre + shift) -> template centre
    flip = np.eye(4)
    flip[0, 0] = -1
    flip[0, 3] = t1.shape[0] - 1
    a_pre = a_tpl @ flip
    a_pre[:3, 3] += shift + rng.uniform(-20, 20, 3)
    # the tumour in deep white matter of one hemisphere, away from the brain surface
    radius = float(rng.uniform(11, 15))
    depth = ndimage.distance_transform_edt(brain > 0.5)
    cand = np.argwhere((wm > 0.9) & (depth > radius + 12))
    cand_world = spatial.voxel_to_world(cand, a_tpl)
    cand = cand_world[np.abs(cand_world[:, 0]) > 18]
    c_tpl = cand[rng.integers(len(cand))]
    inv_pose = np.linalg.inv(pose)
    truth = Truth(
        patient=patient,
        seed=int(seed),
        head_pose=pose.tolist(),
        tumour_centre=spatial.apply_affine(inv_pose, c_tpl).tolist(),
        tumour_radius=radius,
        mass_effect=float(rng.uniform(0.35, 0.5)),
        mass_sigma=radius + 6.0,
        collapse=float(rng.uniform(0.3, 0.45)),
        collapse_sigma=radius + 5.0,
        motion_rotation=spatial.rotation_matrix(rng.uniform(-4, 4, 3)).tolist(),
        motion_centre=spatial.apply_affine(inv_pose, centre_tpl).tolist(),
        motion_translation=rng.uniform(-5, 5, 3).tolist(),
    )
    return truth, a_pre


def _tissue(truth: Truth, tpl, points_pre) -> list[np.ndarray]:
    """Template values (t1, gm, wm, brain) for tissue at pre-op world points (through the mass effect and pose)."""
    a_tpl, *maps = tpl
    h = spatial.apply_affine(np.asarray(truth.head_pose), points_pre + truth.mass_field(points_pre))
    return [_sample(v, a_tpl, h).astype(np.float32) for v in maps]


def _pre_op(rng, truth: Truth, a_pre: np.ndarray, tpl) -> dict:
    """The pre-op scan: tumour level set ``f`` (< 1 inside, irregular outline), T1ce- and FLAIR-like images as
    acquired, brain and tumour masks."""
    shape = tpl[1].shape
    c_pre = np.asarray(truth.tumour_centre)
    p = _grid_points(shape, a_pre).astype(np.float32)
    irregular = 1 + 0.12 * np.clip(_smooth_noise(rng, shape, 5), -2, 2).reshape(-1)
    f_pre = (np.linalg.norm(p - c_pre, axis=1) / (truth.tumour_radius * irregular)).reshape(shape).astype(np.float32)
    vals = [v.reshape(shape) for v in _tissue(truth, tpl, p)]
    del p
    t1ce, flair = _tissue_intensities(*vals, f_pre, post=False)
    brain = vals[3] > 0.5
    images = [_acquire(rng, img, brain, gamma=1.0, bias=0.05, noise=0.02, smooth=0.0, slice_mm=1.0) for img in (t1ce, flair)]
    return {"f": f_pre, "affine": a_pre, "brain": brain, "tumour": (f_pre < 1) & brain, "t1ce": images[0], "flair": images[1]}


def _post_op_tissue(truth: Truth, pre: dict, tpl, slice_mm: int) -> dict:
    """The post-op tissue on a 1 mm grid (axis-aligned RAS around the moved head, whole thick slices): the
    tumour level set, the noise-free T1ce- and FLAIR-like images, the template maps, brain and cavity."""
    brain_pre, a_pre = pre["brain"], pre["affine"]
    corners = spatial.voxel_to_world(np.argwhere(brain_pre)[:: max(1, int(brain_pre.sum() // 20000))], a_pre)
    moved = truth.tissue_to_post_world(corners)
    lo = np.floor(moved.min(0)) - 6
    hi = np.ceil(moved.max(0)) + 6
    nz = int(np.ceil((hi[2] - lo[2] + 1) / slice_mm))
    shape_hr = (int(hi[0] - lo[0] + 1), int(hi[1] - lo[1] + 1), nz * int(slice_mm))
    a_hr = np.eye(4)
    a_hr[:3, 3] = lo
    q = _grid_points(shape_hr, a_hr).astype(np.float32)
    s = truth.post_world_to_tissue(q)
    p_post = (s + truth.collapse_field(s)).astype(np.float32)
    del q, s
    f_post = _sample(pre["f"], a_pre, p_post, order=1, cval=10.0).reshape(shape_hr)
    vals = [v.reshape(shape_hr) for v in _tissue(truth, tpl, p_post)]
    del p_post
    t1ce, flair = _tissue_intensities(*vals, f_post, post=True)
    brain = vals[3] > 0.5
    return {"affine": a_hr, "lo": lo, "f": f_post, "maps": vals, "t1ce": t1ce, "flair": flair, "brain": brain,
            "cavity": (f_post < 1) & brain, "slice_mm": int(slice_mm)}


def _acquire_post(rng, acq_rng, post: dict, truth: Truth, pre: dict, tpl, acq: Acquisition) -> list[np.ndarray]:
    """The post-op T1ce and FLAIR as acquired (:class:`Acquisition`); ``rng`` draws what the standard acquisition
    always drew, ``acq_rng`` what a harder one adds (tissue gains, intensity curves)."""
    images = [post["t1ce"], post["flair"]]
    if acq.tissue_gain > 0:
        t1, gm, wm, brain = post["maps"]
        csf = np.clip(brain - gm - wm, 0, 1)
        images = [img * (1 + sum(acq_rng.uniform(-acq.tissue_gain, acq.tissue_gain) * m for m in (gm, wm, csf)))
                  for img in images]
    out = []
    for img, g in ((images[0], rng.uniform(0.7, 0.85)), (images[1], rng.uniform(1.15, 1.3))):
        if acq.curve > 0:
            img = _monotone_curve(acq_rng, img, acq.curve)
        out.append(_acquire(rng, img, post["brain"], gamma=float(g), bias=acq.bias, noise=acq.noise, smooth=acq.smooth,
                            slice_mm=acq.slice_mm))
    return out


def _monotone_curve(rng, img: np.ndarray, strength: float) -> np.ndarray:
    """A random monotone intensity curve (piecewise linear through 5 knots on [0, max]), of ``strength`` 0-1."""
    top = float(img.max()) or 1.0
    steps = rng.uniform(1 - strength, 1 + strength, 5)
    knots_y = np.concatenate([[0.0], np.cumsum(steps)]) / steps.sum() * top
    return np.interp(img, np.linspace(0, top, 6), knots_y).astype(np.float32)


def _write_patient(out: Path, pre: dict, post: dict, post_images, truth: Truth, ids, lm_q, lm_p) -> dict:
    """Every file of the patient but the second rater's landmarks; returns the paths by role."""
    slice_mm = post["slice_mm"]
    a_post = post["affine"].copy()
    a_post[2, 2] = slice_mm
    a_post[2, 3] = post["lo"][2] + (slice_mm - 1) / 2
    resection = _thick(post["cavity"].astype(np.float32), slice_mm) >= 0.5
    paths = {f.split(".")[0]: out / f for f in DEMO_FILES}
    for key in ("t1ce", "flair"):
        write_image(Image(pre[key], pre["affine"]), paths[f"pre_{key}"], dtype=np.int16)
    write_image(Image(pre["tumour"].astype(np.uint8), pre["affine"]), paths["pre_tumor"])
    write_image(Image(pre["brain"].astype(np.uint8), pre["affine"]), paths["pre_brain"])
    for key, img in zip(("post_t1ce", "post_flair"), post_images):
        write_image(Image(img, a_post), paths[key], dtype=np.int16)
    write_image(Image(resection.astype(np.uint8), a_post), paths["post_resection"])
    write_landmarks(landmarks_frame(ids, lm_q), paths["post_landmarks_expert"])
    write_landmarks(landmarks_frame(ids, lm_p), paths["pre_landmarks_expert"])
    truth.save(paths["truth"])
    return paths


def _thick(vol: np.ndarray, slice_mm: int = 3) -> np.ndarray:
    """Average consecutive 1 mm slices along the third axis into thick slices."""
    k = int(slice_mm)
    return vol.reshape(vol.shape[0], vol.shape[1], -1, k).mean(-1)


def _acquire(rng, img, brain, gamma, bias, noise, smooth, slice_mm) -> np.ndarray:
    """Simulate an acquisition: in-plane smoothing, slice thickness, intensity curve, bias field, Rician noise."""
    out = ndimage.gaussian_filter(img, (smooth, smooth, 0)) if smooth else img
    if slice_mm > 1:
        out = _thick(out, slice_mm)
        brain = _thick(brain.astype(np.float32), slice_mm) > 0.5
    out = np.clip(out, 0, None) ** gamma
    out = out * _bias_field(rng, out.shape, bias)
    re = out + rng.normal(0, noise, out.shape)
    im = rng.normal(0, noise, out.shape)
    out = np.sqrt(re**2 + im**2) * (ndimage.binary_dilation(brain, iterations=2) | (out > 0))
    return np.round(1000 * out).astype(np.int16)


def _choose_landmarks(rng, img, brain, cavity, affine, n, accept, max_dist=20.0, min_dist=6.0, min_sep=15.0, avoid=()):
    """Salient anatomical points (3D corners: large smallest eigenvalue of the structure tensor) near the cavity.

    As an expert would, the points lie on anatomy that both scans show, not on the cavity's wall: the
    saliency is computed with the cavity filled with the intensity of the tissue around it, and the
    points keep ``min_dist`` mm from it (6 mm, the reach of the structure tensor's smoothing, for the
    landmarks of today's demo; 2 mm for those near the cavity, where registration is least reliable), and
    ``min_sep`` mm from each other and from the points ``avoid``.
    """
    dist = ndimage.distance_transform_edt(~cavity, sampling=spatial.spacing_of(affine))
    depth = ndimage.distance_transform_edt(brain)
    region = (dist >= min_dist) & (dist <= max_dist) & (depth > 4) & ~cavity
    img = img.copy()
    img[dist < 1.5] = np.median(img[(dist >= 3) & (dist <= 8) & brain])
    g = [ndimage.gaussian_filter(img, 1.0, order=o) for o in ((1, 0, 0), (0, 1, 0), (0, 0, 1))]
    idx = np.argwhere(region)
    tensor = np.empty((len(idx), 3, 3), np.float32)
    for a in range(3):
        for b in range(a, 3):
            comp = ndimage.gaussian_filter(g[a] * g[b], 2.0)[tuple(idx.T)]
            tensor[:, a, b] = tensor[:, b, a] = comp
    lam = np.linalg.eigvalsh(tensor)[:, 0]
    score = np.zeros(img.shape, np.float32)
    score[tuple(idx.T)] = lam
    peaks = (ndimage.maximum_filter(score, size=7) == score) & region & (score > 0)
    pk = np.argwhere(peaks)
    pk = pk[np.argsort(-score[tuple(pk.T)])][:300]
    pk = pk[accept(spatial.voxel_to_world(pk, affine))][:150]
    chosen: list[np.ndarray] = []
    order = rng.permutation(len(pk))
    # favour the most salient half but keep variety: random order within the top candidates
    for i in sorted(order[: max(len(order) // 2, n * 4)], key=lambda j: j):
        x = spatial.voxel_to_world(pk[i], affine)
        if all(np.linalg.norm(x - c) >= min_sep for c in [*chosen, *np.atleast_2d(avoid)] if len(c)):
            chosen.append(x)
        if len(chosen) == n:
            break
    if len(chosen) < n:
        raise RuntimeError(f"found only {len(chosen)} salient landmark candidates {min_dist:g}-{max_dist:g} mm from the "
                           f"cavity (wanted {n})")
    return np.array(chosen)


def manifest_rows(patients, outdir, manifest_dir) -> pd.DataFrame:
    """The manifest rows of the demo cohort, paths relative to the manifest's folder."""
    rows = []
    for patient in patients:
        for tp, kind, name, fname in DEMO_SPEC:
            rel = os.path.relpath(Path(outdir) / patient / fname, manifest_dir)
            rows.append({"patient": patient, "timepoint": tp, "kind": kind, "name": name, "path": rel})
    return pd.DataFrame(rows)

