"""Snakemake adapter: localise a patient's landmarks with their PINs (landmarkflow.detect.pin)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)

from landmarkflow.core.logutil import log_to
from landmarkflow.detect.pin import redetect_pin

with log_to(snakemake.log[0]):  # noqa: F821
    redetect_pin(
        preproc_dir=snakemake.input.preproc,  # noqa: F821
        models=snakemake.input.models,  # noqa: F821
        seed=snakemake.params.seed,  # noqa: F821
        out_csv=snakemake.output.landmarks,  # noqa: F821
        out_ends=snakemake.output.ends,  # noqa: F821
        out_traj=snakemake.output.trajectories,  # noqa: F821
        device=snakemake.params.device,  # noqa: F821
        detection=dict(snakemake.params.detection),  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
    )
