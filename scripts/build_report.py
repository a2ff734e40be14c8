"""Snakemake adapter: the per-cohort HTML report (landmarkflow.report)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)

from landmarkflow.logutil import log_to  # noqa: E402
from landmarkflow.manifest import load_manifest  # noqa: E402
from landmarkflow.report import build_report  # noqa: E402

with log_to(snakemake.log[0]):  # noqa: F821
    build_report(
        m=load_manifest(snakemake.input.manifest, annotator=snakemake.params.annotator),  # noqa: F821
        config=snakemake.params.config,  # noqa: F821
        summary_tsv=snakemake.input.summary,  # noqa: F821
        errors_tsv=snakemake.input.errors,  # noqa: F821
        predictions_tsv=snakemake.input.predictions,  # noqa: F821
        warnings_tsv=snakemake.input.warnings,  # noqa: F821
        check_tsv=snakemake.input.check,  # noqa: F821
        out_html=snakemake.output.html,  # noqa: F821
        figures_dir=snakemake.output.figures,  # noqa: F821
    )
