"""Snakemake adapter: differential radiomics of one patient (landmarkflow.evaluate.radiomics)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)

from landmarkflow.core.logutil import log_to
from landmarkflow.evaluate.radiomics import patient_radiomics, truth_file

with log_to(snakemake.log[0]):  # noqa: F821
    settings = snakemake.params.settings  # noqa: F821
    files = {Path(p).stem: p for p in snakemake.input.landmarks}  # noqa: F821
    truth = truth_file(snakemake.input.preproc)  # noqa: F821
    if truth is not None:
        files = {"truth": truth, **files}
    patient_radiomics(
        preproc_dir=snakemake.input.preproc,  # noqa: F821
        lesions_dir=snakemake.input.lesions,  # noqa: F821
        landmark_files=files,
        params_file=snakemake.input.params,  # noqa: F821
        out_tsv=snakemake.output.table,  # noqa: F821
        radii=settings["radii"],
        exclude_lesions=settings["exclude_lesions"],
        min_voxels=settings["min_voxels"],
        modalities=settings["modalities"],
    )
