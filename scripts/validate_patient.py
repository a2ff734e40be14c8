"""Snakemake adapter: check one patient's files and write its manifest slice (landmarkflow.cohort.validation)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)

from landmarkflow.core.logutil import log_to
from landmarkflow.cohort.validation import validate_patient

with log_to(snakemake.log[0]):  # noqa: F821
    validate_patient(
        rows=snakemake.params.rows,  # noqa: F821
        source=snakemake.params.source,  # noqa: F821
        table_out=snakemake.output.table,  # noqa: F821
        warnings_out=snakemake.output.warnings,  # noqa: F821
        annotator=snakemake.params.annotator,  # noqa: F821
        unmatched_truth=snakemake.params.unmatched_truth,  # noqa: F821
        files=snakemake.input.files,  # noqa: F821
    )
