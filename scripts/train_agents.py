"""Snakemake adapter: train every agent of a patient in one batched job (landmarkflow.detect.agent.pipeline)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821 (conda envs need no install)

from landmarkflow.detect.agent.pipeline import train_agents
from landmarkflow.detect.agent.train import AgentConfig
from landmarkflow.core.logutil import log_to

with log_to(snakemake.log[0]):  # noqa: F821
    settings = dict(snakemake.params.settings)  # noqa: F821
    device = settings.pop("device")
    train_agents(
        preproc_dir=snakemake.input.preproc,  # noqa: F821
        lesions_dir=snakemake.input.lesions,  # noqa: F821
        cfg=AgentConfig(**settings),
        seed=snakemake.params.seed,  # noqa: F821
        out_dir=snakemake.output.models,  # noqa: F821
        device=device,
        threads=snakemake.threads,  # noqa: F821
        checkpoint_every=snakemake.config["agent"]["checkpoint_every"],  # noqa: F821 (not a parameter: reruns nothing)
    )
