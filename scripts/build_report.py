"""Snakemake adapter: the per-cohort HTML report (landmarkflow.present.report)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)

from landmarkflow.core.logutil import log_to
from landmarkflow.cohort.manifest import load_manifest
from landmarkflow.present.report import ReportInputs, build_report

with log_to(snakemake.log[0]):  # noqa: F821
    inp = snakemake.input  # noqa: F821
    build_report(
        m=load_manifest(inp.manifest, annotator=snakemake.params.annotator),  # noqa: F821
        config=snakemake.params.config,  # noqa: F821
        inputs=ReportInputs(
            summary=inp.summary,
            errors=inp.errors,
            predictions=inp.predictions,
            preproc=list(inp.preproc),
            lesions=list(inp.lesions),
            files=list(inp.landmarks) + list(inp.search) + list(inp.benchmarks) + list(inp.registrations),
            warnings=inp.warnings,
            check=inp.check,
            bands=inp.bands,
            rigid_fit=inp.rigid_fit,
            rigid_residuals=inp.rigid_residuals,
            radiomics_summary=inp.radiomics[0] if inp.radiomics else None,
            radiomics_changes=inp.radiomics[1] if inp.radiomics else None,
        ),
        out_html=snakemake.output.html,  # noqa: F821
        figures_dir=snakemake.output.figures,  # noqa: F821
        patients_dir=snakemake.output.patients,  # noqa: F821
    )
