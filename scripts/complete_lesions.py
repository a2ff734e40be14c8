"""Snakemake adapter: a patient's lesion masks, given or derived (landmarkflow.preprocess.lesions)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)

from landmarkflow.core.logutil import log_to
from landmarkflow.preprocess.lesions import complete_lesions

with log_to(snakemake.log[0]):  # noqa: F821
    complete_lesions(
        preproc_dir=snakemake.input.preproc,  # noqa: F821
        outdir=snakemake.output.folder,  # noqa: F821
        settings=snakemake.params.settings,  # noqa: F821
        svf_dir=snakemake.input.get("svf"),  # noqa: F821
    )
