"""Snakemake adapter: preprocess one patient (landmarkflow.preprocess.pipeline)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)

from landmarkflow.core.logutil import log_to
from landmarkflow.cohort.manifest import load_manifest
from landmarkflow.preprocess.pipeline import Settings, preprocess_patient

with log_to(snakemake.log[0]):  # noqa: F821
    preprocess_patient(
        m=load_manifest(snakemake.input.manifest, annotator=snakemake.params.annotator),  # noqa: F821
        patient=snakemake.wildcards.patient,  # noqa: F821
        outdir=snakemake.output.folder,  # noqa: F821
        identity_out=snakemake.output.identity,  # noqa: F821
        settings=Settings(
            **snakemake.params.settings,  # noqa: F821
            seed=snakemake.params.seed,  # noqa: F821
            reference_modality=snakemake.params.reference_modality,  # noqa: F821
        ),
    )
