"""The preprocessed patient folder, ``results/<patient>/preproc/``: its layout and ``preproc.json``.

One owner for the contract between preprocessing and every later stage (agents, PIN, ANTs,
radiomics, evaluation, report): :func:`landmarkflow.preprocess.pipeline.preprocess_patient` writes
through a :class:`PreprocFolder`, and every stage reads through one; nobody else builds
these file names or parses ``preproc.json``.

Layout (all on one 1 mm grid in the pre-op world, RAS)::

    {pre,post}_<modality>.nii.gz          the images, normalised in the brain
    {pre,post}_brain.nii.gz               brain masks
    pre_tumor.nii.gz, post_resection.nii.gz   lesion masks, when the manifest had them
    landmarks_{pre,post}_<annotator>.csv  every annotator's landmarks, post-op ones rigidly aligned
    post_to_pre_rigid.mat                 the ANTs rigid transform
    preproc.json                          patient, reference modality, modalities, primary annotator,
                                          grid, post_to_pre (4x4 RAS), rotation, warnings, timings
    qc.png                                the QC figure
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import layout
from ..core.errors import InputError
from ..imaging import spatial
from ..imaging.image import Image, read_image
from ..io.landmarks import points_of, read_landmarks
from .manifest import LESIONS, TIMEPOINTS

INFO = "preproc.json"


class PreprocFolder:
    """A preprocessed patient's folder (``path``); :attr:`info` is its ``preproc.json``, read once.

    ``lesions``: the patient's lesion folder (``results/<patient>/lesions/``, written by
    :func:`landmarkflow.preprocess.lesions.complete_lesions`: the manifest's masks completed by derived
    ones). When it is given, :meth:`lesion` and :meth:`has_lesion` read the masks there; otherwise the
    masks the manifest gave, here."""

    def __init__(self, path, lesions=None):
        self.path = Path(path)
        self.lesions = None if lesions is None else Path(lesions)

    @classmethod
    def in_workdir(cls, path) -> PreprocFolder:
        """A workflow's preprocessed folder (``<workdir>/results/<patient>/preproc``) with that patient's lesion
        folder (:func:`landmarkflow.core.layout.lesions_dir`) when the workflow wrote one: how a study on a
        workdir reads the masks every stage used, given or derived."""
        path = Path(path)
        lesions = path.parents[2] / layout.lesions_dir(path.parent.name) if len(path.parents) > 2 else None
        return cls(path, lesions=lesions if lesions is not None and lesions.is_dir() else None)

    def __repr__(self) -> str:
        extra = "" if self.lesions is None else f", lesions={str(self.lesions)!r}"
        return f"PreprocFolder({str(self.path)!r}{extra})"

    # ------------------------------------------------------------------ the file names
    def image_path(self, timepoint: str, modality: str) -> Path:
        return self.path / f"{timepoint}_{modality}.nii.gz"

    def mask_path(self, timepoint: str, name: str) -> Path:
        """``name``: ``brain``, ``tumor`` or ``resection``."""
        return self.path / f"{timepoint}_{name}.nii.gz"

    def landmarks_path(self, timepoint: str, annotator: str) -> Path:
        return self.path / f"landmarks_{timepoint}_{annotator}.csv"

    @property
    def info_path(self) -> Path:
        return self.path / INFO

    @property
    def rigid_transform_path(self) -> Path:
        return self.path / "post_to_pre_rigid.mat"

    @property
    def qc_path(self) -> Path:
        return self.path / "qc.png"

    # ------------------------------------------------------------------ preproc.json
    def write_info(self, info: dict) -> None:
        self.info_path.write_text(json.dumps(info, indent=2))
        self.__dict__.pop("info", None)

    def exists(self) -> bool:
        return self.info_path.exists()

    @cached_property
    def info(self) -> dict:
        if not self.info_path.exists():
            raise InputError(f"{self.info_path}: not found; run the preprocessing first")
        return json.loads(self.info_path.read_text())

    @property
    def patient(self) -> str:
        return self.info["patient"]

    @property
    def reference_modality(self) -> str:
        return self.info["reference_modality"]

    @property
    def modalities(self) -> list[str]:
        """Modalities present at both time points, the reference one first."""
        return list(self.info["modalities"])

    @property
    def primary_annotator(self) -> str:
        return self.info["primary_annotator"]

    @property
    def post_to_pre(self) -> np.ndarray:
        """4x4 RAS: post-op world point -> pre-op world point (the image-based rigid registration)."""
        return np.asarray(self.info["post_to_pre"], dtype=float)

    @property
    def rotation_deg(self) -> float:
        return float(self.info["rotation_deg"])

    def native_extent(self, timepoint: str) -> np.ndarray | None:
        """How long (mm) a voxel of the time point's native (reference) scan is along each axis of this frame, or
        None for a folder written before it was recorded."""
        extent = self.info.get("native_extent_mm", {}).get(timepoint)
        return None if extent is None else np.asarray(extent, dtype=float)

    @property
    def warnings(self) -> list[str]:
        return list(self.info.get("warnings", []))

    @property
    def timings_s(self) -> dict:
        return dict(self.info.get("timings_s", {}))

    def resolve_modalities(self, requested, key: str) -> list[str]:
        """The configured modalities (``key`` names the config entry), or the reference modality for ``[]``."""
        mods = list(requested or []) or [self.reference_modality]
        unknown = [m for m in mods if m not in self.modalities]
        if unknown:
            raise InputError(f"{key} {unknown} not among the modalities of patient {self.patient}: {self.modalities}")
        return mods

    # ------------------------------------------------------------------ reading
    def image(self, timepoint: str, modality: str) -> Image:
        return read_image(self.image_path(timepoint, modality))

    def stack(self, timepoint: str, modalities, smooth_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """The channels (C, X, Y, Z) of ``modalities`` at ``timepoint`` and their affine, each channel smoothed
        with a Gaussian of ``smooth_mm`` (sigma, mm) when it is positive; read once per folder object."""
        key = (timepoint, tuple(modalities), float(smooth_mm))
        cache = self.__dict__.setdefault("_stacks", {})
        if key not in cache:
            imgs = [self.image(timepoint, m) for m in modalities]
            vol, affine = np.stack([i.data for i in imgs]), imgs[0].affine
            if smooth_mm > 0:
                from scipy import ndimage

                sigma = float(smooth_mm) / np.asarray(spatial.spacing_of(affine), dtype=float)
                vol = ndimage.gaussian_filter(vol.astype(np.float32), (0, *sigma))  # each channel on its own
            cache[key] = (vol, affine)
        return cache[key]

    def mask_image(self, timepoint: str, name: str) -> Image | None:
        p = self.mask_path(timepoint, name)
        return read_image(p, dtype=None) if p.exists() else None

    def mask(self, timepoint: str, name: str) -> np.ndarray | None:
        """A boolean mask, or None when the patient has none of that name."""
        img = self.mask_image(timepoint, name)
        return None if img is None else img.data > 0

    def lesion_path(self, timepoint: str) -> Path:
        """Where the time point's lesion mask (pre-op tumour, post-op cavity) is read from: the lesion
        folder when there is one, else this folder (the manifest's mask)."""
        name = f"{timepoint}_{LESIONS[timepoint]}.nii.gz"
        return self.path / name if self.lesions is None else self.lesions / name

    def lesion_image(self, timepoint: str) -> Image | None:
        p = self.lesion_path(timepoint)
        return read_image(p, dtype=None) if p.exists() else None

    def lesion(self, timepoint: str) -> np.ndarray | None:
        """The pre-op tumour or the post-op resection cavity (given or, with a lesion folder, derived), or None."""
        img = self.lesion_image(timepoint)
        return None if img is None else img.data > 0

    def has_lesion(self) -> bool:
        """Whether a time point has a non-empty lesion mask (a derived one may be empty)."""
        return any((mask := self.lesion(tp)) is not None and mask.any() for tp in TIMEPOINTS)

    def landmarks(self, timepoint: str = "post", annotator: str | None = None) -> pd.DataFrame | None:
        """An annotator's landmarks (default: the primary one) in the pre-op world, or None when there are none
        (for the post-op time point they are rigidly aligned; the primary post-op ones always exist)."""
        p = self.landmarks_path(timepoint, annotator or self.primary_annotator)
        return read_landmarks(p) if p.exists() else None

    def truth_path(self) -> Path | None:
        """The pre-op ground truth (the primary annotator's pre-op landmarks), if the manifest had it."""
        p = self.landmarks_path("pre", self.primary_annotator)
        return p if p.exists() else None

    def target(self, landmark: str, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One post-op landmark: (pre-op world RAS mm, voxel position on the grid of ``affine``)."""
        lm = self.landmarks("post")
        row = lm[lm["landmark"] == str(landmark)]
        if row.empty:
            raise InputError(f"landmark {landmark!r} is not in the post-op landmarks of {self.patient} ({', '.join(lm['landmark'])})")
        world = points_of(row)[0]
        return world, spatial.world_to_voxel(world, affine)
