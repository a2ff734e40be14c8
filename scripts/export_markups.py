"""Snakemake adapter: every method's landmarks of a patient as 3D Slicer markups files (landmarkflow.present.review)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)

from landmarkflow.core.logutil import log_to
from landmarkflow.present.review import export_review
from landmarkflow.cohort.preproc_folder import PreprocFolder

with log_to(snakemake.log[0]):  # noqa: F821
    export_review(
        landmark_files=snakemake.input.landmarks,  # noqa: F821
        out_dir=snakemake.output.folder,  # noqa: F821
        truth_file=PreprocFolder(snakemake.input.preproc).truth_path(),  # noqa: F821
        preproc_dir=snakemake.input.preproc,  # noqa: F821
    )
