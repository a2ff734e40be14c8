"""Snakemake adapter: the consensus landmark of one patient (landmarkflow.detect.consensus)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)

from landmarkflow.detect.consensus import ConsensusConfig, build_consensus
from landmarkflow.core.logutil import log_to

with log_to(snakemake.log[0]):  # noqa: F821
    build_consensus(
        landmark_files={k: v for k, v in snakemake.input.items() if k != "start"},  # noqa: F821
        start_csv=snakemake.input.start,  # noqa: F821
        cfg=ConsensusConfig.from_settings(snakemake.params.settings),  # noqa: F821
        out_csv=snakemake.output.landmarks,  # noqa: F821
    )
