"""Snakemake adapter: cohort errors and summary (landmarkflow.evaluate.metrics)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)

from landmarkflow.core import layout
from landmarkflow.core.logutil import log_to
from landmarkflow.cohort.manifest import load_manifest
from landmarkflow.evaluate.metrics import evaluate_cohort

with log_to(snakemake.log[0]):  # noqa: F821
    evaluate_cohort(
        m=load_manifest(snakemake.input.manifest, annotator=snakemake.params.annotator),  # noqa: F821
        landmark_files=snakemake.input.landmarks,  # noqa: F821
        preproc_dirs=snakemake.input.preproc,  # noqa: F821
        lesion_dirs=snakemake.input.lesions,  # noqa: F821
        out_errors=snakemake.output.errors,  # noqa: F821
        out_summary=snakemake.output.summary,  # noqa: F821
        out_predictions=snakemake.output.predictions,  # noqa: F821
        jacobian_files=[layout.jacobian_table(d) for d in snakemake.input.registrations],  # noqa: F821
        out_rigid=snakemake.output.rigid_fit,  # noqa: F821
        out_residuals=snakemake.output.rigid_residuals,  # noqa: F821
        flag_mm=snakemake.params.flag_mm,  # noqa: F821
        out_check=snakemake.output.check,  # noqa: F821
        out_bands=snakemake.output.bands,  # noqa: F821
        flag_error_mm=snakemake.params.flag_error_mm,  # noqa: F821
    )
