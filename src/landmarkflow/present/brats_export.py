"""Results in BraTS-Reg's own form (``landmarkflow brats-export``): what a BraTS-Reg user submits or compares.

BraTS-Reg's task is this workflow's: the follow-up (post-operative) landmarks found in the baseline
(pre-operative) scan. Per case, :func:`export_case` writes

- ``<case>.csv``: a method's landmarks (default the consensus) in BraTS-Reg's convention
  (``Landmark,X,Y,Z``, LPS mm: :func:`..io.brats.write_brats_landmarks`);
- ``<case>_detj.nii.gz``: the determinant of the Jacobian of the registration's deformation (ANTs SyN
  or ``svf``), resampled from the preprocessed grid onto the grid of the baseline scan as given
  (linear interpolation; 1, no deformation, outside the preprocessed box).

The preprocessed grid is in the baseline's world, so no transform is involved: only the grids differ.
"""

from __future__ import annotations

from pathlib import Path

from ..cohort.manifest import Manifest
from ..cohort.preproc_folder import PreprocFolder
from ..core import layout
from ..core.errors import InputError
from ..imaging.image import Image, read_header, read_image, write_image
from ..imaging.resample import resample
from ..io.brats import write_brats_landmarks
from ..io.landmarks import read_landmarks

#: the registrations whose Jacobian determinant can be exported
JACOBIANS = ("ants_syn", "svf")


def export_case(m: Manifest, patient: str, results_root, out_dir, method: str = "consensus",
                registration: str = "ants_syn") -> tuple[Path, Path]:
    """Write ``<patient>.csv`` and ``<patient>_detj.nii.gz`` into ``out_dir`` (see the module); returns both paths.
    ``results_root``: the folder that holds ``results/``."""
    if registration not in JACOBIANS:
        raise InputError(f"registration {registration!r}: expected one of {', '.join(JACOBIANS)}")
    root = Path(results_root)
    lm_path = root / layout.landmarks(patient, method)
    jac_path = root / layout.jacobian_image(patient, registration)
    for path, what in ((lm_path, f"the {method} landmarks"), (jac_path, f"the {registration} Jacobian")):
        if not path.exists():
            raise InputError(f"{path}: {what} of {patient} not found; run the workflow (with that stage) first")
    pre = PreprocFolder(root / layout.preproc(patient))
    reference = m.images(patient, "pre").get(pre.reference_modality)
    if reference is None:
        raise InputError(f"{m.source}: patient {patient} has no pre-operative {pre.reference_modality} image")
    shape, affine = read_header(reference)
    jac = resample(read_image(jac_path), shape, affine, order=1, cval=1.0)
    out = Path(out_dir)
    csv, detj = out / f"{patient}.csv", out / f"{patient}_detj.nii.gz"
    write_brats_landmarks(read_landmarks(lm_path), csv)
    write_image(Image(jac.data.astype("float32"), affine), detj)
    return csv, detj


def export_cohort(m: Manifest, results_root, out_dir, method: str = "consensus", registration: str = "ants_syn") -> list:
    """:func:`export_case` for every patient of ``m``."""
    return [export_case(m, p, results_root, out_dir, method, registration) for p in m.patients]
