"""Snakemake adapter: the second registration of one patient (landmarkflow.registration.svf)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)

from landmarkflow.core.logutil import log_to
from landmarkflow.registration.svf import run_svf

with log_to(snakemake.log[0]):  # noqa: F821
    run_svf(
        preproc_dir=snakemake.input.preproc,  # noqa: F821
        outdir=snakemake.output.folder,  # noqa: F821
        out_landmarks=snakemake.output.landmarks,  # noqa: F821
        settings=snakemake.params.settings,  # noqa: F821
        seed=snakemake.params.seed,  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
    )
