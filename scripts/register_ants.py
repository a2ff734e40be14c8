"""Snakemake adapter: the ANTs baseline for one patient (landmarkflow.registration.ants)."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(snakemake.threads))  # noqa: F821

from landmarkflow.core.logutil import log_to
from landmarkflow.registration.ants import run_ants_baseline

with log_to(snakemake.log[0]):  # noqa: F821
    settings = snakemake.params.settings  # noqa: F821
    run_ants_baseline(
        preproc_dir=snakemake.input.preproc,  # noqa: F821
        lesions_dir=snakemake.input.lesions,  # noqa: F821
        outdir=snakemake.output.folder,  # noqa: F821
        out_landmarks={
            "ants_rigid": snakemake.output.rigid,  # noqa: F821
            "ants_affine": snakemake.output.affine,  # noqa: F821
            "ants_syn": snakemake.output.syn,  # noqa: F821
            "ants_syn_nomask": snakemake.output.syn_nomask,  # noqa: F821
        },
        preset=settings["preset"],
        modalities=settings["modalities"],
        deterministic=settings["deterministic"],
        seed=snakemake.params.seed,  # noqa: F821
    )
