"""Snakemake adapter: the cohort's differential radiomics table and summary (landmarkflow.evaluate.radiomics)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)

from landmarkflow.core.logutil import log_to
from landmarkflow.evaluate.radiomics import cohort_radiomics

with log_to(snakemake.log[0]):  # noqa: F821
    cohort_radiomics(
        tables=snakemake.input.tables,  # noqa: F821
        out_all=snakemake.output.table,  # noqa: F821
        out_summary=snakemake.output.summary,  # noqa: F821
        out_changes=snakemake.output.changes,  # noqa: F821
    )
