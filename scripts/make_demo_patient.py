"""Snakemake adapter: generate one synthetic demo patient (landmarkflow.demo.synthetic)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)

from landmarkflow.core.logutil import log_to
from landmarkflow.demo.synthetic import make_patient

with log_to(snakemake.log[0]):  # noqa: F821
    make_patient(
        patient=snakemake.wildcards.patient,  # noqa: F821
        outdir=Path(snakemake.output[0]).parent.parent,  # noqa: F821
        seed=snakemake.params.seed,  # noqa: F821
        n_landmarks=snakemake.params.landmarks,  # noqa: F821
        near_cavity=snakemake.params.near_cavity,  # noqa: F821
        acquisition=snakemake.params.acquisition,  # noqa: F821
    )
