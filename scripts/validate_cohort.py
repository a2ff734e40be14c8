"""Snakemake adapter: the cohort's validated manifest and warnings, gathered from the patients' slices (landmarkflow.cohort.validation)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)

from landmarkflow.core.logutil import log_to
from landmarkflow.cohort.validation import gather_validation

with log_to(snakemake.log[0]):  # noqa: F821
    gather_validation(
        tables=snakemake.input.tables,  # noqa: F821
        warnings=snakemake.input.warnings,  # noqa: F821
        table_out=snakemake.output.table,  # noqa: F821
        warnings_out=snakemake.output.warnings,  # noqa: F821
    )
