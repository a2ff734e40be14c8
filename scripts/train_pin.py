"""Snakemake adapter: train the PINs of every landmark of a patient (landmarkflow.detect.pin)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)

from landmarkflow.core.logutil import log_to
from landmarkflow.detect.pin import PinConfig, train_pins

with log_to(snakemake.log[0]):  # noqa: F821
    train_pins(
        preproc_dir=snakemake.input.preproc,  # noqa: F821
        lesions_dir=snakemake.input.lesions,  # noqa: F821
        cfg=PinConfig.from_settings(snakemake.params.settings),  # noqa: F821
        seed=snakemake.params.seed,  # noqa: F821
        out_dir=snakemake.output.models,  # noqa: F821
        device=snakemake.params.settings["device"],  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
    )
