"""Snakemake adapter: redetect a patient's landmarks with one agent variant, or seeded at ANTs' landmarks (landmarkflow.detect.agent.pipeline)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)

from landmarkflow.detect.agent.pipeline import redetect_landmarks
from landmarkflow.core.logutil import log_to

with log_to(snakemake.log[0]):  # noqa: F821
    redetect_landmarks(
        preproc_dir=snakemake.input.preproc,  # noqa: F821
        lesions_dir=snakemake.input.lesions,  # noqa: F821
        models=snakemake.input.models,  # noqa: F821
        variant=snakemake.wildcards.get("variant", "seeded"),  # noqa: F821
        seed=snakemake.params.seed,  # noqa: F821
        out_csv=snakemake.output.landmarks,  # noqa: F821
        out_ends=snakemake.output.ends,  # noqa: F821
        out_traj=snakemake.output.trajectories,  # noqa: F821
        device=snakemake.params.device,  # noqa: F821
        detection=dict(snakemake.params.detection),  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
        seed_landmarks=snakemake.input.get("seeds"),  # noqa: F821
    )
