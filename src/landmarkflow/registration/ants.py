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

from ..cohort.preproc_folder import PreprocFolder
from ..core import layout
from ..core.config import default
from ..core.files import atomic_dir, atomic_path, write_table
from ..imaging import spatial
from ..imaging.image import Image, write_image
from ..io.landmarks import landmarks_frame, points_of, write_landmarks
from .folding import jacobian_row

log = logging.getLogger(__name__)


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Reproducible ANTs: a fixed sampling seed (and one thread when ``deterministic``)."""
    import ants

    ants.config.set_ants_deterministic(on=deterministic, seed_value=int(seed))


def to_ants(image: Image):
    import ants

    spacing, origin, direction = spatial.itk_from_affine(image.affine)
    return ants.from_numpy(
        np.ascontiguousarray(image.data, dtype=np.float32),
        origin=tuple(float(o) for o in origin),
        spacing=tuple(float(s) for s in spacing),
        direction=direction,
    )


def from_ants(img) -> Image:
    affine = spatial.affine_from_itk(img.spacing, img.origin, img.direction)
    return Image(np.asarray(img.numpy(), dtype=np.float32), affine)


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
    return spatial.lps_to_ras_matrix(lps)


#: the levels of a linear registration: iterations, shrink factors and smoothing (voxels) from coarse to fine
LEVELS = {"aff_iterations": (1000, 500, 250, 50), "aff_shrink_factors": (6, 4, 2, 1), "aff_smoothing_sigmas": (3, 2, 1, 0)}
#: all but the finest (:func:`register_linear` with ``coarse``)
COARSE_LEVELS = {key: value[:-1] for key, value in LEVELS.items()}


def register_linear(
    fixed: Image,
    moving: Image,
    kind: str = "Rigid",
    fixed_mask: Image | None = None,
    moving_mask: Image | None = None,
    out_file=None,
    metric: str = "mattes",
    coarse: bool = False,
) -> np.ndarray:
    """Rigid/affine registration (mutual information, multi-resolution).

    Returns the RAS matrix fixed world -> moving world; with ``out_file`` the
    ANTs transform is also written there (atomically). With ``coarse`` the finest level is left out (the
    coarsest voxels are 6, 4 and 2 times the image's, :data:`COARSE_LEVELS`): a movement is found within a few
    tenths of a millimetre at a third of the cost or less.
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
            **(COARSE_LEVELS if coarse else LEVELS),
            outprefix=str(Path(tmp) / "reg_"),
        )
        mat_file = reg["fwdtransforms"][0]
        matrix = matrix_from_ants_file(mat_file)
        if out_file is not None:
            with atomic_path(out_file, suffix=".mat") as dest:
                shutil.copyfile(mat_file, dest)
    return matrix


def n4(image: Image, mask: Image | None = None, shrink: int = 4) -> Image:
    """N4 bias-field correction (ANTs) of a non-negative image."""
    import ants

    img = to_ants(Image(np.clip(image.data, 0, None), image.affine))
    m = to_ants(Image((mask.data > 0).astype(np.float32), mask.affine)) if mask is not None else None
    out = ants.n4_bias_field_correction(img, mask=m, shrink_factor=shrink, convergence={"iters": [50, 50, 30], "tol": 1e-6})
    return from_ants(out)


def write_identity(path) -> None:
    """An identity rigid transform as an ANTs/ITK transform file (atomically)."""
    import ants

    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    with atomic_path(path, suffix=".mat") as dest:
        ants.write_transform(tx, str(dest))


# ----------------------------------------------------------------------------- the ANTs baseline
PRESETS = {
    # close to antsRegistrationSyN.sh -t s (quality) and antsRegistrationSyNQuick.sh (quick)
    "quality": {"aff_iterations": (1000, 500, 250, 100), "aff_shrink_factors": (8, 4, 2, 1), "aff_smoothing_sigmas": (3, 2, 1, 0),
                "reg_iterations": (100, 70, 50, 20), "syn_sampling": 32, "flow_sigma": 3, "total_sigma": 0},
    # linear stages as antsRegistrationSyNQuick.sh (no iterations at full resolution); SyN as ANTsPy's default "SyN"
    "quick": {"aff_iterations": (1000, 500, 250, 0), "aff_shrink_factors": (8, 4, 2, 1), "aff_smoothing_sigmas": (3, 2, 1, 0),
              "reg_iterations": (40, 20, 0), "syn_sampling": 32, "flow_sigma": 3, "total_sigma": 0},
}


def map_points(points_ras, transforms, whichtoinvert=None) -> np.ndarray:
    """Map RAS points through ANTs transform files (the ``apply_transforms_to_points`` convention:
    ``fwdtransforms`` of a registration map fixed-space points to the moving space)."""
    import ants
    import pandas as pd

    df = pd.DataFrame(spatial.ras_to_lps(np.atleast_2d(points_ras)), columns=["x", "y", "z"])
    out = ants.apply_transforms_to_points(3, df, [str(t) for t in transforms], whichtoinvert=whichtoinvert)
    return spatial.lps_to_ras(out[["x", "y", "z"]].to_numpy())


def ants_baseline(fixed: list[Image], moving: list[Image], points_moving, outdir, preset: str = default("ants", "preset"),
                  fixed_mask: Image | None = None, moving_mask: Image | None = None, brain: Image | None = None) -> dict:
    """Rigid, affine and SyN (masked and unmasked) registration of ``moving`` onto ``fixed``
    (lists of co-registered modalities; the first drives, the others are extra metrics).

    Returns ``{method: (n, 3) points in the fixed world}`` for ``points_moving``
    (moving world), and writes to ``outdir`` the transforms, the SyN-warped
    moving image, the Jacobian determinant of the SyN warp and
    ``jacobian.tsv`` (share of non-positive determinants inside ``brain``).
    """
    import shutil
    import tempfile
    import time

    import ants
    import pandas as pd

    if preset not in PRESETS:
        raise ValueError(f"ants preset {preset!r}: expected one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    fx = [to_ants(i) for i in fixed]
    mv = [to_ants(i) for i in moving]
    extras = [["mattes", f, m, 1, 32] for f, m in zip(fx[1:], mv[1:])] or None
    fm = to_ants(fixed_mask) if fixed_mask is not None else None
    mm = to_ants(moving_mask) if moving_mask is not None else None
    lin = dict(aff_metric="mattes", aff_sampling=32, aff_random_sampling_rate=0.25, aff_iterations=p["aff_iterations"],
               aff_shrink_factors=p["aff_shrink_factors"], aff_smoothing_sigmas=p["aff_smoothing_sigmas"])
    syn = dict(syn_metric="mattes", syn_sampling=p["syn_sampling"], reg_iterations=p["reg_iterations"],
               flow_sigma=p["flow_sigma"], total_sigma=p["total_sigma"])
    points = np.atleast_2d(points_moving)
    result, timings, jac_rows = {}, {}, []
    with tempfile.TemporaryDirectory(prefix="lmf_ants_") as tmp:
        def keep(files, name):
            kept = []
            for f in files:
                suffix = ".nii.gz" if f.endswith(".nii.gz") else Path(f).suffix
                dest = outdir / f"{name}_{'warp' if 'Warp' in f and 'Inverse' not in f else 'inverse_warp' if 'Inverse' in f else 'affine'}{suffix}"
                shutil.copyfile(f, dest)
                kept.append(str(dest))
            return kept

        t0 = time.time()
        log.info("ANTs (%s) 1/4: rigid", preset)
        rig = ants.registration(fx[0], mv[0], "Rigid", outprefix=f"{tmp}/rigid_", **lin)
        timings["ants_rigid"] = time.time() - t0
        t0 = time.time()
        log.info("ANTs (%s) 2/4: affine (rigid took %.0f s)", preset, timings["ants_rigid"])
        aff = ants.registration(fx[0], mv[0], "Affine", initial_transform=rig["fwdtransforms"][0], outprefix=f"{tmp}/affine_", **lin)
        timings["ants_affine"] = time.time() - t0 + timings["ants_rigid"]
        for name, reg in (("ants_rigid", rig), ("ants_affine", aff)):
            (mat,) = keep(reg["fwdtransforms"], name)
            # moving points -> fixed space: the inverse of the (fixed -> moving) point transform
            result[name] = map_points(points, [mat], whichtoinvert=[True])
        for stage, (name, masks) in enumerate((("ants_syn", (fm, mm)), ("ants_syn_nomask", (None, None))), start=3):
            t0 = time.time()
            log.info("ANTs (%s) %d/4: %s (%s)", preset, stage, name, "cost-function masked" if masks[0] is not None else "no mask")
            reg = ants.registration(fx[0], mv[0], "SyNOnly", initial_transform=aff["fwdtransforms"][0],
                                    mask=masks[0], moving_mask=masks[1], multivariate_extras=extras,
                                    outprefix=f"{tmp}/{name}_", **syn)
            timings[name] = time.time() - t0 + timings["ants_affine"]
            fwd = keep([reg["fwdtransforms"][0]], name)  # the warp; the affine is the one kept above
            inv = keep([reg["invtransforms"][1]], name)
            affine_file = str(outdir / "ants_affine_affine.mat")
            # moving -> fixed for points: inverse affine first, then the inverse warp
            result[name] = map_points(points, [affine_file, inv[0]], whichtoinvert=[True, False])
            jac = ants.create_jacobian_determinant_image(fx[0], fwd[0], do_log=False)
            jac_img = from_ants(jac)
            jac_rows.append(jacobian_row(name, jac_img.data, None if brain is None else brain.data > 0, timings[name]))
            write_image(jac_img, outdir / layout.jacobian_image_name(name))
            if name == "ants_syn":
                warped = ants.apply_transforms(fx[0], mv[0], [fwd[0], affine_file])
                write_image(from_ants(warped), outdir / "ants_syn_warped_post.nii.gz")
    jac_rows += [{"method": m, "nonpositive_jacobian": 0.0, "min_jacobian": np.nan, "seconds": round(timings[m], 1)}
                 for m in ("ants_rigid", "ants_affine")]
    write_table(pd.DataFrame(jac_rows), layout.jacobian_table(outdir), float_format="%.6f")
    log.info("ANTs (%s): %s", preset, ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    return result


def run_ants_baseline(preproc_dir, outdir, out_landmarks: dict, preset: str = default("ants", "preset"), modalities=(),
                      seed: int = default(None, "seed"),
                      deterministic: bool = False, lesions_dir=None) -> dict:
    """The ANTs baseline on a preprocessed patient: the rigidly aligned post-op scan registered onto the pre-op scan.

    Landmarks start at the post-op positions after the preprocessing's rigid
    alignment (``identity``) and go through each registration into the pre-op
    world; ``out_landmarks`` maps method names to CSV paths. ``ants_syn`` is
    cost-function masked (tumour and cavity, dilated by 3 mm, excluded from the
    metric) when the patient has those masks; ``ants_syn_nomask`` is not. ``lesions_dir``: the patient's
    lesion folder (given and derived masks, :mod:`..preprocess.lesions`); without it, the manifest's masks.
    """
    set_seed(seed, deterministic)
    folder = PreprocFolder(preproc_dir, lesions=lesions_dir)
    mods = folder.resolve_modalities(modalities, "ants.modalities")
    fixed = [folder.image("pre", m) for m in mods]
    moving = [folder.image("post", m) for m in mods]

    def masked(tp):
        brain = folder.mask(tp, "brain")
        lesion = folder.lesion(tp)
        if lesion is not None:
            brain &= ~ndimage.binary_dilation(lesion, iterations=3)
        return Image(brain.astype(np.float32), fixed[0].affine)

    has_lesion = folder.has_lesion()
    if not has_lesion:
        log.warning("no tumour or resection mask: ants_syn is not cost-function masked (same as ants_syn_nomask)")
    lm = folder.landmarks("post")
    with atomic_dir(outdir) as tmp:
        mapped = ants_baseline(fixed, moving, points_of(lm), tmp, preset,
                               fixed_mask=masked("pre") if has_lesion else None,
                               moving_mask=masked("post") if has_lesion else None,
                               brain=folder.mask_image("pre", "brain"))
    for method, path in out_landmarks.items():
        write_landmarks(landmarks_frame(lm["landmark"], mapped[method]), path)
    return mapped
